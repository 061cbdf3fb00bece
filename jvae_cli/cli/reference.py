"""The README's command reference and preset table, generated from the CLI and the preset files themselves.

    python -m jvae_cli.cli.reference README.md    # rewrite the generated blocks in place

A test checks that the README holds exactly what this produces now, so the front door cannot drift from
the code.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, get_args

import typer

if TYPE_CHECKING:
    import click

BLOCKS = {
    "commands": "command reference",
    "presets": "preset table",
    "gallery": "gallery table",
    "pretrained": "pretrained models' table",
}
GALLERIES = {  # block: (table file relative to the README's folder, the script that writes it)
    "gallery": (Path("examples") / "gallery" / "quickstart_metrics.md", "examples/gallery.py"),
    "pretrained": (
        Path("examples") / "gallery" / "official_dsprites_metrics.md",
        "examples/pretrained_gallery.py",
    ),
}


NAMES = {str: "TEXT", int: "INTEGER", float: "FLOAT", Path: "PATH"}


def _metavar(param: Any) -> str:
    """The value's kind from the option's annotation: TEXT, INTEGER, FLOAT, PATH (a tuple names each)."""
    annotation = param.type_descriptor.annotation
    inner = get_args(annotation) or (annotation,)
    return param.metavar or " ".join(NAMES.get(kind, "VALUE") for kind in inner)


def _param_line(param: Any) -> tuple[str, str]:
    """(flags, help) of a parameter of Typer's command objects, read by their documented attributes."""
    if param.param_type_name == "argument":
        name = param.name.upper()
        return (f"{name}..." if param.nargs == -1 else name), ""
    flags = ", ".join([*param.opts, *param.secondary_opts])
    if not param.is_flag:
        flags += f" {_metavar(param)}"
    help_text = " ".join((param.help or "").split())
    default = param.default
    if not param.is_flag and default not in (None, (), [], "") and "[default" not in help_text:
        help_text += f" [default: {default}]"
    return flags, help_text


def _command_block(path: str, command: Any) -> list[str]:
    summary = " ".join((command.help or "").split("\n\n")[0].split())
    lines = [f"jvae {path}", f"    {summary}"]
    for param in command.params:
        if param.name == "help" or getattr(param, "hidden", False):
            continue
        flags, help_text = _param_line(param)
        lines.append(f"    {flags:<34} {help_text}".rstrip())
    return lines


def command_reference() -> str:
    from jvae_cli.cli import app

    root = cast("click.Group", typer.main.get_command(app))  # the app has subcommands, so it is a group
    blocks: list[str] = []
    for name, command in root.commands.items():
        for sub, leaf in getattr(command, "commands", {None: command}).items():
            blocks.append("\n".join(_command_block(f"{name} {sub}" if sub else name, leaf)))
    return "```text\n" + "\n\n".join(blocks) + "\n```"


def _model_summary(preset) -> str:  # noqa: ANN001 - a presets.Preset
    model = preset.model
    parts = [model.architecture + (f" {model.hidden}" if model.architecture == "mlp" else "")]
    if model.classes:
        parts.append(f"{model.generic} z + {model.continuous - model.generic} w, {model.classes} classes")
    else:
        parts.append(f"{model.continuous} continuous")
        parts += [f"{k}-way" for k in model.discrete]
    return ", ".join(parts)


def preset_table() -> str:
    from jvae_cli.presets import load_preset, preset_names

    rows = ["| name | dataset | model | loss | schedule | what it is |", "|---|---|---|---|---|---|"]
    for name in preset_names():
        preset = load_preset(name)[1]
        data, train = preset.data, preset.train
        dataset = f"{data.dataset} {data.image_size}x{data.image_size}" + (
            " generated" if data.source == "generated" else ""
        )
        length = f"{train.steps} steps" if train.steps is not None else f"{train.epochs} epochs"
        schedule = f"batch {train.batch_size}, lr {train.lr:g}, {length}"
        description = preset.description.replace("|", "/")
        rows.append(
            f"| `{name}` | {dataset} | {_model_summary(preset)} | {preset.loss.kind} | {schedule} | {description} |"
        )
    return "\n".join(rows)


def gallery_table(root: Path, block: str) -> str:
    """The metrics table a gallery script last wrote beside the README in `root`."""
    table, script = GALLERIES[block]
    path = root / table
    return path.read_text(encoding="utf-8").strip() if path.is_file() else f"(run python {script})"


def generated(block: str, root: Path) -> str:
    if block == "commands":
        return command_reference()
    return preset_table() if block == "presets" else gallery_table(root, block)


def marked(text: str, block: str) -> re.Match[str] | None:
    pattern = rf"(<!-- {block}:start[^>]*-->\n)(.*?)(<!-- {block}:end -->)"
    return re.search(pattern, text, flags=re.S)


def rewrite(text: str, root: Path) -> str:
    for block in BLOCKS:
        match = marked(text, block)
        if match is None:
            raise SystemExit(f"README has no <!-- {block}:start --> ... <!-- {block}:end --> block")
        text = text[: match.start(2)] + generated(block, root) + "\n" + text[match.end(2) :]
    return text


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "README.md")
    path.write_text(rewrite(path.read_text(encoding="utf-8"), path.resolve().parent), encoding="utf-8")
    print(f"rewrote the {' and '.join(BLOCKS.values())} in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
