"""The `jvae` command line: parses, validates, calls one engine function, renders its result.

Commands import the engine (and so torch) inside their bodies, which keeps `jvae --help` fast.

The top layer. May import: every other layer; nothing imports it.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

import typer

from jvae.base.version import __version__
from jvae.cli import (
    bench_cmd,
    compare_cmd,
    edit_cmd,
    encode_cmd,
    env_cmd,
    evaluate_cmd,
    explore_cmd,
    export_cmd,
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
app.command("env")(env_cmd.env)
app.command("export", epilog=export_cmd.EXAMPLES)(export_cmd.export)
app.command("push", epilog=export_cmd.EXAMPLES)(export_cmd.push)


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
    """The `jvae` program. Once a command has ended and nothing but the main thread is left, the process
    leaves without tearing the interpreter down: every file is written and closed by then, the exit handlers
    still run, and skipping the teardown of PyTorch's modules saves one to several seconds per command (each
    run of a sweep is a command; a torchrun worker also avoids a C++ teardown that can abort)."""
    try:
        app()
        status: str | int | None = 0
    except SystemExit as done:
        status = done.code
    if threading.active_count() > 1:
        sys.exit(status)  # a thread still running gets the usual wait
    code = _exit_code(status)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code)


def _exit_code(status: str | int | None) -> int:
    """What `sys.exit(status)` would make the exit status (a message is printed and gives 1)."""
    if status is None:
        return 0
    if isinstance(status, int):
        return status & 0xFF
    print(status, file=sys.stderr)
    return 1
