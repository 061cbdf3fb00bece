"""`jvae edit`: change named or numbered latent units of an image and decode it (the paper's figure 8b)."""

from __future__ import annotations

from pathlib import Path

import typer

from jvae.cli.common import (
    DEVICE_HELP,
    class_option,
    find_checkpoint,
    load,
    output_path,
    set_class,
    unit_assignment,
)
from jvae.cli.console import fail, out, user_errors

CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


def named_changes(args: list[str]) -> list[tuple[str, str]]:
    """`--NAME VALUE` and `--NAME=VALUE` pairs from the arguments Typer did not recognise."""
    pairs, i = [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise fail(f"unexpected argument {arg!r}; edits look like --NAME +2, --NAME -1, --NAME =0.5", 2)
        name, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(args):
                raise fail(f"--{name} needs a value: +d, -d or =v", 2)
            value = args[i + 1]
            i += 1
        pairs.append((name, value))
        i += 1
    return pairs


EXAMPLES = """Examples:
jvae edit face.png --ckpt official:celeba --azimuth +2
jvae edit digit.png --ckpt official:mnist --unit d0=5 --sweep morph.gif
"""  # the epilog of --help, and the manual's examples


def edit(
    ctx: typer.Context,
    image: Path = typer.Argument(..., help="The image to edit."),
    ckpt: Path = typer.Option(
        None,
        "--ckpt",
        help="Checkpoint, run or exported folder, official:NAME or hf:OWNER/NAME [default: $JVAE_CKPT, else the newest runs/*/ckpt.pt].",
    ),
    out_path: Path = typer.Option(
        None, "--out", "-o", help="Edited image [default: IMAGE.edited.png beside it]."
    ),
    unit_changes: list[str] = typer.Option(
        [], "--unit", "-u", help="Unnamed unit change: 3=+2, 3=-1, 3=0.5, d0=5."
    ),
    sweep: Path = typer.Option(
        None, "--sweep", help="Also write a GIF moving from the original code to the edit."
    ),
    frames: int = typer.Option(12, "--frames", min=2, max=500, help="Frames of --sweep."),
    label: int | None = class_option(),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Edit an image by moving its latent units.

    --NAME +d adds d, --NAME -d subtracts, --NAME =v sets; --unit addresses unnamed units.
    """
    from jvae.base.media import write_gif, write_png
    from jvae.modeling.latents import parse_change, parse_unit
    from jvae.use.inference import edit_image

    requested = named_changes(list(ctx.args))
    for text in unit_changes:
        requested.append(unit_assignment("--unit", text, "UNIT=CHANGE such as 3=+2 or d0=5"))
    if not requested:
        raise fail("nothing to edit: pass --NAME +d (a named unit) or --unit 3=+2", 2)
    if not image.is_file():
        raise fail(f"image not found: {image}", 1)
    target = out_path if out_path is not None else image.with_name(f"{image.stem}.edited.png")
    output_path(target, {".png"})
    if target.resolve() == image.resolve():
        raise fail(f"refusing to overwrite the input image {image}; choose another --out", 1)
    if sweep is not None:
        output_path(sweep, {".gif"})
        if sweep.resolve() in (image.resolve(), target.resolve()):
            raise fail(
                f"--sweep {sweep} would overwrite the input or the edited image; choose another name", 1
            )
    with user_errors():
        loaded, torch_device = load(find_checkpoint(ckpt), device)
        model, names = loaded.model, loaded.unit_names
        set_class(model, label)
        changes = [parse_change(parse_unit(unit, model, names), value, model) for unit, value in requested]
        result = edit_image(loaded, image, changes, torch_device, frames if sweep is not None else 0)
        write_png(result.image, target)
        if sweep is not None:
            write_gif(result.sweep, sweep, duration_ms=80)
    moved = ", ".join(
        f"{u}: {result.original[0, c.unit.index]:+.2f} -> {result.edited[0, c.unit.index]:+.2f}"
        if c.unit.kind == "continuous"
        else f"{u}: category {c.value:.0f}"
        for (u, _), c in zip(requested, changes)
    )
    out.print(f"wrote {target} ({moved})" + (f" and {sweep}" if sweep is not None else ""), markup=False)
