"""`jvae presets`: list the shipped presets, or show one resolved."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from jvae.cli.console import out, user_errors

app = typer.Typer(help="List presets, or show one.", no_args_is_help=False)


def model_kind(preset_dict: dict) -> str:
    model, loss = preset_dict["model"], preset_dict["loss"]
    latents = f"{model['continuous']} cont"
    if model["discrete"]:
        latents += " + " + "x".join(str(k) for k in model["discrete"]) + " disc"
    return f"{loss['kind']} {model['architecture']} ({latents})"


@app.callback(invoke_without_command=True)
def list_presets(ctx: typer.Context) -> None:
    """List every preset: name, dataset, model kind, description."""
    if ctx.invoked_subcommand is not None:
        return
    from jvae.modeling.presets import load_preset, preset_names, preset_to_dict

    table = Table(title="jvae presets")
    table.add_column("name", no_wrap=True)  # names are what users copy, never cut
    for column in ("dataset", "model", "description"):
        table.add_column(column)
    with user_errors():
        for name in preset_names():
            preset = preset_to_dict(load_preset(name)[1])
            table.add_row(name, preset["data"]["dataset"], model_kind(preset), preset["description"])
    out.print(table)


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
