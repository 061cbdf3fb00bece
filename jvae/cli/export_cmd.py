"""`jvae export` and `jvae push`: a model as a shared folder (safetensors, config, card), locally or on the
Hugging Face Hub."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from jvae.cli.common import checkpoint_file
from jvae.cli.console import err, out, user_errors

EXAMPLES = """Examples:

jvae export runs/quickstart shared/quickstart
jvae push runs/quickstart my-name/quickstart-dsprites --private
jvae traverse hf:my-name/quickstart-dsprites --unit 0 --out t.gif
"""

SOURCE_HELP = "A run folder, a checkpoint, official:NAME, hf:OWNER/NAME or an exported folder."


def _run_folder(source: str, ckpt: Path) -> Path | None:
    """The run folder whose traversal and report go along with the model, where the source is one."""
    folder = Path(source)
    if folder.is_dir() and ckpt.parent.resolve() == folder.resolve():
        return folder
    return ckpt.parent if Path(source).is_file() and ckpt.name == "ckpt.pt" else None


def export(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    folder: Path = typer.Argument(..., help="The folder to write (new or empty)."),
    license_name: str = typer.Option("other", "--license", help="The licence the model card declares."),
    repo_id: str = typer.Option(None, "--repo-id", help="OWNER/NAME the card's commands load it as."),
    with_optimizer: bool = typer.Option(
        False, "--with-optimizer", help="Also write the optimiser state (optimizer.safetensors)."
    ),
) -> None:
    """Write a model as a shared folder (safetensors, config, card).

    model.safetensors, config.json, preset.toml, a model card (README.md), the traversal GIF and, from a
    run folder, its metrics report: what `jvae push` uploads and hf:OWNER/NAME loads."""
    from jvae.use.shared import export as write_folder

    ckpt = checkpoint_file(source)
    with user_errors():
        done = write_folder(
            ckpt,
            folder,
            run_dir=_run_folder(source, ckpt),
            repo_id=repo_id,
            license_name=license_name,
            with_optimizer=with_optimizer,
        )
    for path in done.files:
        out.print(f"{path}  {path.stat().st_size} bytes", markup=False)


def push(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    repo_id: str = typer.Argument(..., help="The Hub repository, OWNER/NAME (created when new)."),
    private: bool = typer.Option(False, "--private", help="Create the repository private."),
    revision: str = typer.Option(None, "--revision", help="The branch to push to (created when new)."),
    token: str = typer.Option(None, "--token", help="A Hub token [default: HF_TOKEN or your login]."),
    license_name: str = typer.Option("other", "--license", help="The licence the model card declares."),
    with_optimizer: bool = typer.Option(
        False, "--with-optimizer", help="Also upload the optimiser state (optimizer.safetensors)."
    ),
) -> None:
    """Upload a model to the Hugging Face Hub as jvae export writes it.

    The repository is created when new (--private); load the model back anywhere with hf:OWNER/NAME."""
    from jvae.use.hub import parse_name, upload
    from jvae.use.shared import export as write_folder

    with user_errors():
        parse_name(f"hf:{repo_id}" + (f"@{revision}" if revision else ""))
    ckpt = checkpoint_file(source)
    with user_errors(), tempfile.TemporaryDirectory(prefix="jvae-push-") as staging:
        done = write_folder(
            ckpt,
            Path(staging) / "model",
            run_dir=_run_folder(source, ckpt),
            repo_id=repo_id,
            license_name=license_name,
            with_optimizer=with_optimizer,
        )
        size = sum(path.stat().st_size for path in done.files)
        err.print(f"uploading {len(done.files)} files, {size} bytes, to hf:{repo_id}", markup=False)
        url = upload(done.folder, repo_id, private=private, revision=revision, token=token)
    out.print(f"pushed to hf:{repo_id}" + (f"@{revision}" if revision else "") + f" ({url})", markup=False)
