"""`jvae presets`: list the shipped presets, or show one resolved."""

from __future__ import annotations

import json
import shutil
from itertools import groupby

import typer

from jvae.cli.console import out, user_errors

app = typer.Typer(help="List presets, or show one.", no_args_is_help=False)


def model_kind(preset_dict: dict) -> str:
    """The loss kind and the latent space in a few characters: 10c+10d is ten continuous units and one
    ten-way discrete variable, 3x2d three two-way ones (the architecture is in `jvae presets show`)."""
    model, loss = preset_dict["model"], preset_dict["loss"]
    parts = [f"{model['continuous']}c"]
    for ways, group in groupby(model["discrete"]):
        count = len(list(group))
        parts.append(f"{count}x{ways}d" if count > 1 else f"{ways}d")
    return f"{loss['kind']} {'+'.join(parts)}"


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "\u2026"


@app.callback(invoke_without_command=True)
def list_presets(ctx: typer.Context) -> None:
    """List every preset on one line: name, model (Nc: N continuous units, Nd: an N-way discrete
    variable) and what it trains on. `jvae presets show NAME` prints the whole preset."""
    if ctx.invoked_subcommand is not None:
        return
    from jvae.modeling.presets import load_preset, preset_names, preset_to_dict

    rows = [("name", "model", "about")]
    with user_errors():
        for name in preset_names():
            preset = preset_to_dict(load_preset(name)[1])
            rows.append((name, model_kind(preset), preset["summary"] or preset["description"]))
    name_width = max(len(row[0]) for row in rows)  # names are what users copy, never cut
    model_width = max(len(row[1]) for row in rows)
    about_width = max(shutil.get_terminal_size().columns - name_width - model_width - 4, 12)
    for name, model, about in rows:
        line = f"{name:<{name_width}}  {model:<{model_width}}  {cut(about, about_width)}"
        out.print(line.rstrip())
    out.print("Nc: N continuous units, Nd: an N-way discrete variable (jvae presets show NAME)")


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Preset name or path to a preset .toml file."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Override a field: section.key=value."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly the preset's fields as JSON."),
    explain: bool = typer.Option(
        False, "--explain", help="One line per field: its value and what that value does."
    ),
) -> None:
    """Show a preset resolved (after --set overrides and validation)."""
    from jvae.modeling.presets import field_notes, load_preset, preset_to_dict, preset_to_toml

    with user_errors():
        _, preset = load_preset(name, overrides)
    if as_json:
        print(json.dumps(preset_to_dict(preset), indent=2))
    elif explain:
        for path, value, meaning in field_notes(preset):
            print(f"{path} = {json.dumps(value)}  # {meaning}")
    else:
        print(preset_to_toml(preset), end="")
