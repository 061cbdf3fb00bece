"""`jvae traverse`: latent traversals of one unit, several, or all of them, as a GIF or a PNG grid."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import typer

from jvae.cli.common import (
    DEVICE_HELP,
    class_option,
    load,
    output_path,
    scale_option,
    seed_option,
    set_class,
)
from jvae.cli.console import fail, out, user_errors

EXAMPLES = """Examples:
jvae traverse runs/quickstart/ckpt.pt --all --out traversals.gif
jvae traverse official:mnist --unit d0 --unit slant --out digit.png
jvae traverse official:celeba --unit azimuth --from face.png --out turn.gif
"""  # the epilog of --help, and the manual's examples


def traverse(
    ckpt: Path = typer.Argument(
        ..., help="A checkpoint (ckpt.pt), a run or exported folder, official:NAME or hf:OWNER/NAME."
    ),
    out_path: Path = typer.Option(..., "--out", "-o", help="Output file: .gif (animation) or .png (grid)."),
    units: list[str] = typer.Option(
        [], "--unit", "-u", help="Unit to traverse: 3, d0 or a name; repeatable."
    ),
    all_units: bool = typer.Option(False, "--all", help="Traverse every unit, rows ranked by KL."),
    value_range: tuple[float, float] = typer.Option(
        None, "--range", help="Continuous range LO HI [default: Phi^-1(0.05) Phi^-1(0.95)]."
    ),
    from_image: Path = typer.Option(
        None, "--from", help="Start from this image's code instead of the prior mode."
    ),
    samples: int = typer.Option(
        0, "--samples", min=0, max=256, help="Start from N random prior codes instead."
    ),
    frames: int = typer.Option(
        None, "--frames", min=2, max=500, help="Traversal steps [default: 10; categories if all discrete]."
    ),
    duration: int = typer.Option(100, "--duration", min=10, help="GIF milliseconds per frame."),
    seed: int = seed_option("Seed of --samples."),
    scale: int = scale_option(),
    label: int | None = class_option(),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Draw latent traversals as a GIF or a PNG grid.

    Decode codes while one latent unit moves across its range (the paper's figures 2, 3, 5 and 7b).
    """
    import torch

    from jvae.base.images import load_image
    from jvae.base.media import write_gif, write_png
    from jvae.modeling.latents import (
        DEFAULT_RANGE,
        UnitKL,
        parse_unit,
        prior_mode,
        prior_sample,
        ranked_units,
    )
    from jvae.modeling.latents import all_units as every_unit
    from jvae.use.figures import traversal_frames, traversal_grid, unit_label

    output_path(out_path, {".gif", ".png"})
    if not units and not all_units:
        raise fail("choose what to traverse: --unit 3 (repeatable), --unit d0, --unit NAME, or --all", 2)
    if from_image is not None and out_path.resolve() == from_image.resolve():
        raise fail(f"refusing to overwrite the input image {from_image}; choose another --out", 1)
    if from_image is not None and samples:
        raise fail("--from and --samples choose the base code two ways; pass one", 2)
    with user_errors():
        loaded, torch_device = load(ckpt, device)
        model, names = loaded.model, loaded.unit_names
        set_class(model, label)
        stored = loaded.unit_kl
        kl = UnitKL(stored["continuous"], stored["discrete"]) if stored else None
        if all_units:
            chosen = ranked_units(model, kl) if kl else every_unit(model)
        else:
            chosen = [parse_unit(text, model, names) for text in units]
        if from_image is not None:
            data = loaded.preset.data
            image = load_image(from_image, data.channels, data.image_size).unsqueeze(0).to(torch_device)
            with torch.no_grad():
                bases = model.encode(image).mode()
        elif samples:
            bases = prior_sample(model, samples, torch.Generator().manual_seed(seed), torch_device)
        else:
            bases = prior_mode(model, 1, torch_device)
        if frames is None:
            only_discrete = all(u.kind == "discrete" for u in chosen)
            frames = max(model.discrete[u.index] for u in chosen) if only_discrete else 10
        # --range takes exactly two numbers, LO and HI
        limits = cast(tuple[float, float], tuple(value_range)) if value_range else DEFAULT_RANGE
        if limits[0] >= limits[1]:
            raise fail(f"--range {limits[0]} {limits[1]}: LO must be below HI", 2)
        labels = [unit_label(u, names, kl) for u in chosen]
        if out_path.suffix.lower() == ".gif":
            pictures = traversal_frames(model, bases, chosen, frames, labels, limits, scale)
            write_gif(pictures, out_path, duration_ms=duration)
        else:
            write_png(traversal_grid(model, bases, chosen, frames, labels, limits, scale), out_path)
    out.print(
        f"wrote {out_path} ({len(chosen)} unit(s), {bases.shape[0]} base code(s), {frames} steps)",
        markup=False,
    )
