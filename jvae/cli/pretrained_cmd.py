"""`jvae pretrained`: the released models usable by name (official:NAME) wherever a checkpoint is taken."""

from __future__ import annotations

import json
from typing import TypedDict

import typer
from rich import box
from rich.table import Table

from jvae.cli.console import out, user_errors

app = typer.Typer(help="List pretrained models, or fetch one ahead of use.", no_args_is_help=False)


class _Row(TypedDict):
    """One pretrained model as the list prints it, typed so the table's cells are known to be text."""

    name: str
    model: str
    cached: bool
    path: str


@app.callback(invoke_without_command=True)
def list_pretrained(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """List the pretrained models: name, what it is, and whether it is already in the cache."""
    if ctx.invoked_subcommand is not None:
        return
    from jvae.use.pretrained import PREFIX, RELEASED, checkpoint_path

    rows: list[_Row] = [
        {
            "name": PREFIX + name,
            "model": model.summary,
            "cached": checkpoint_path(name).is_file(),
            "path": str(checkpoint_path(name)),
        }
        for name, model in RELEASED.items()
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    out.print("The JointVAE authors' released models, downloaded on first use:")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("model")
    table.add_column("cached", no_wrap=True)
    for row in rows:
        table.add_row(row["name"], row["model"], "yes" if row["cached"] else "no")
    out.print(table)


@app.command("fetch")
def fetch(names: list[str] = typer.Argument(..., help="Pretrained names, e.g. official:celeba.")) -> None:
    """Download, verify and import pretrained models now.

    For example before going offline; later uses read the cache.
    """
    from jvae.use.pretrained import pretrained_checkpoint

    for name in names:
        with user_errors():
            path = pretrained_checkpoint(name if ":" in name else f"official:{name}")
        out.print(f"{name}: {path}", markup=False)
