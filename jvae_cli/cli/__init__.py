"""The `jvae` command line: parses, validates, calls one engine function, renders its result.

Commands import the engine (and so torch) inside their bodies, which keeps `jvae --help` fast.
"""

from __future__ import annotations

import typer

from jvae_cli import __version__
from jvae_cli.cli import (
    bench_cmd,
    compare_cmd,
    edit_cmd,
    encode_cmd,
    evaluate_cmd,
    explore_cmd,
    import_cmd,
    plot_cmd,
    presets_cmd,
    pretrained_cmd,
    sample_cmd,
    sweep_cmd,
    train_cmd,
    traverse_cmd,
    units_cmd,
)

app = typer.Typer(
    name="jvae",
    help="Train JointVAE and related disentangling VAEs; traverse, sample, encode, edit and evaluate them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(presets_cmd.app, name="presets")
app.add_typer(pretrained_cmd.app, name="pretrained")
app.add_typer(import_cmd.app, name="import")
app.command("train", epilog=train_cmd.EXAMPLES)(train_cmd.train)
app.command("units")(units_cmd.units)
app.command("traverse", epilog=traverse_cmd.EXAMPLES)(traverse_cmd.traverse)
app.command("sample", epilog=sample_cmd.EXAMPLES)(sample_cmd.sample)
app.command("encode", epilog=encode_cmd.EXAMPLES)(encode_cmd.encode)
app.command("edit", context_settings=edit_cmd.CONTEXT, epilog=edit_cmd.EXAMPLES)(edit_cmd.edit)
app.command("evaluate", epilog=evaluate_cmd.EXAMPLES)(evaluate_cmd.evaluate)
app.command("bench")(bench_cmd.bench)
app.command("plot")(plot_cmd.plot)
app.command("sweep", epilog=sweep_cmd.EXAMPLES)(sweep_cmd.sweep)
app.command("compare")(compare_cmd.compare)
app.command("explore")(explore_cmd.explore)


def _version(value: bool) -> None:
    if value:
        print(f"jvae {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """jvae: disentangled representations from training to figures."""


def main() -> None:
    app()
