"""`jvae sample`: images decoded from prior samples, optionally conditioned on discrete categories."""

from __future__ import annotations

from pathlib import Path

import typer

from jvae.cli.common import (
    DEVICE_HELP,
    class_option,
    load,
    output_path,
    scale_option,
    seed_option,
    set_class,
    unit_assignment,
)
from jvae.cli.console import fail, out, user_errors

EXAMPLES = """Examples:
jvae sample official:mnist --out samples.png --n 64
jvae sample official:mnist --per-category --out per_digit.png
"""  # the epilog of --help, and the manual's examples


def sample(
    ckpt: Path = typer.Argument(
        ..., help="A checkpoint (ckpt.pt), a run or exported folder, official:NAME or hf:OWNER/NAME."
    ),
    out_path: Path = typer.Option(..., "--out", "-o", help="Output .png."),
    n: int = typer.Option(
        64, "--n", min=1, max=4096, help="Number of samples (columns with --per-category)."
    ),
    categories: list[str] = typer.Option(
        [], "--category", "-c", help="Fix a discrete variable: d0=4 or NAME=4."
    ),
    per_category: bool = typer.Option(
        False, "--per-category", help="One row per category of --variable, continuous codes shared by column."
    ),
    variable: str = typer.Option("d0", "--variable", help="The discrete variable --per-category lays out."),
    seed: int = seed_option("Seed of the prior samples."),
    scale: int = scale_option(),
    label: int | None = class_option(),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Decode samples of the prior into an image grid.

    With --per-category, one row per category (the paper's figure 4a).
    """
    import torch

    from jvae.base.media import write_png
    from jvae.modeling.latents import parse_change, parse_unit
    from jvae.use.figures import per_category_grid, sample_grid

    output_path(out_path, {".png"})
    with user_errors():
        loaded, torch_device = load(ckpt, device)
        model, names = loaded.model, loaded.unit_names
        set_class(model, label)
        fixed = []
        for text in categories:
            address, value = unit_assignment("--category", text, "d0=K")
            unit = parse_unit(address, model, names)
            if unit.kind != "discrete":
                raise fail(
                    f"--category {text!r}: {address} is a continuous unit; --category fixes discrete ones", 2
                )
            fixed.append((unit, int(parse_change(unit, value, model).value)))
        generator = torch.Generator().manual_seed(seed)
        if per_category:
            unit = parse_unit(variable, model, names)
            if unit.kind != "discrete":
                raise fail(f"--variable {variable!r} is not a discrete variable", 2)
            picture = per_category_grid(model, unit, n, generator, torch_device, fixed, scale)
        else:
            picture = sample_grid(model, n, generator, torch_device, fixed, scale)
        write_png(picture, out_path)
    out.print(f"wrote {out_path}", markup=False)
