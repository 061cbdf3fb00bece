"""The manual's generated reference: every command and option, every preset, every preset field, the metrics.

    python -m jvae.cli.reference              # rewrite docs/reference/*.md from the code
    python -m jvae.cli.reference --check      # exit 1, naming them, when a page is out of date

The pages are committed so the manual reads without running anything, and a test regenerates them in
memory and fails when one is stale: an option or preset field changed without its page cannot pass CI.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, get_args

import typer

from jvae.cli.api_reference import api_page
from jvae.cli.schema_reference import GENERATED, cell, metrics_page, preset_fields_page, presets_page

if TYPE_CHECKING:
    import click

FOLDER = Path("docs") / "reference"
NAMES = {str: "TEXT", int: "INTEGER", float: "FLOAT", Path: "PATH"}


def _metavar(param: Any) -> str:
    """The value's kind from the option's annotation: TEXT, INTEGER, FLOAT, PATH (a tuple names each)."""
    annotation = param.type_descriptor.annotation
    inner = get_args(annotation) or (annotation,)
    return param.metavar or " ".join(NAMES.get(kind, "VALUE") for kind in inner)


def _option_row(param: Any) -> str:
    flags = ", ".join(f"`{flag}`" for flag in [*param.opts, *param.secondary_opts])
    value = "" if param.is_flag else _metavar(param)
    shown = param.default not in (None, (), [], "") and not param.is_flag
    return f"| {flags} | {value} | {cell(str(param.default)) if shown else ''} | {cell(param.help or '')} |"


def _command_section(path: str, command: Any) -> list[str]:
    params = [p for p in command.params if p.name != "help" and not getattr(p, "hidden", False)]
    arguments = [p for p in params if p.param_type_name == "argument"]
    options = [p for p in params if p.param_type_name != "argument"]
    usage = " ".join(
        ["jvae", path, *(f"{p.name.upper()}{'...' if p.nargs == -1 else ''}" for p in arguments)]
    )
    help_text = (command.help or "").strip()
    lines = [f"## `jvae {path}`", "", *(" ".join(p.split()) + "\n" for p in help_text.split("\n\n"))]
    lines += ["```text", f"{usage} [OPTIONS]", "```", ""]
    if options:
        lines += ["| option | value | default | meaning |", "|---|---|---|---|"]
        lines += [_option_row(p) for p in options] + [""]
    if command.epilog:
        lines += ["Examples:", "", "```text", *command.epilog.strip().splitlines()[1:], "```", ""]
    return lines


def commands_page() -> str:
    from jvae.cli import app

    root = cast("click.Group", typer.main.get_command(app))  # the app has subcommands, so it is a group
    lines = [
        GENERATED,
        "# Commands",
        "",
        "Every command and option, as the command line defines them; `jvae COMMAND --help` prints the same.",
        "",
    ]
    for name, command in root.commands.items():
        for sub, leaf in getattr(command, "commands", {None: command}).items():
            lines += _command_section(f"{name} {sub}" if sub else name, leaf)
    return "\n".join(lines).rstrip() + "\n"


PAGES: dict[str, Callable[[], str]] = {
    "api.md": api_page,
    "commands.md": commands_page,
    "presets.md": presets_page,
    "preset-fields.md": preset_fields_page,
    "metrics.md": metrics_page,
}


def stale(folder: Path) -> list[str]:
    """The generated pages in `folder` that differ from what the code produces now."""
    return [name for name, page in PAGES.items() if _read(folder / name) != page()]


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def main(argv: list[str]) -> int:
    check = "--check" in argv
    folder = Path(next((a for a in argv if not a.startswith("--")), FOLDER))
    if check:
        names = stale(folder)
        for name in names:
            print(f"{folder / name} is out of date: run python -m jvae.cli.reference", file=sys.stderr)
        return 1 if names else 0
    folder.mkdir(parents=True, exist_ok=True)
    for name, page in PAGES.items():
        (folder / name).write_text(page(), encoding="utf-8")
    print(f"wrote {', '.join(PAGES)} in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
