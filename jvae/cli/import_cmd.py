"""`jvae import`: models trained by other programs, turned into jvae checkpoints."""

from __future__ import annotations

from pathlib import Path

import typer

from jvae.cli.common import output_path
from jvae.cli.console import fail, out, user_errors

app = typer.Typer(help="Turn models trained elsewhere into jvae checkpoints.", no_args_is_help=True)


@app.command("official")
def official(
    folder: Path = typer.Argument(
        ..., help="An official JointVAE trained_models/<name>/ folder (model.pt and specs.json)."
    ),
    out_path: Path = typer.Option(..., "--out", "-o", help="The jvae checkpoint to write (.pt)."),
    data: str = typer.Option(
        None, "--data", help="The dataset, to measure each unit's KL on it [default: on the model's samples]."
    ),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
) -> None:
    """Import a model folder in the official JointVAE code's format.

    One of the authors' released models (Schlumberger/joint-vae, trained_models/), or one trained with that
    code.
    """
    from jvae.use.official import import_official

    output_path(out_path, {".pt"})
    if out_path.exists() and not force:
        raise fail(f"{out_path} exists; choose another --out or pass --force", 1)
    with user_errors():
        checkpoint = import_official(folder, out_path, data_path=data)
    preset, imported = checkpoint.preset, checkpoint.imported or {}
    model = preset["model"]
    out.print(
        f"imported {imported['name']} ({preset['data']['dataset']} "
        f"{preset['data']['image_size']}x{preset['data']['image_size']}, {model['continuous']} continuous, "
        f"discrete {model['discrete']}; sha256 {imported['sha256'][:12]}) to {out_path}",
        markup=False,
    )
