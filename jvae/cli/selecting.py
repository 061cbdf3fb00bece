"""What `train --seeds`, `sweep` and `compare` share of `--select`: checking its value and showing the result."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from jvae.cli.console import fail, out

if TYPE_CHECKING:
    from jvae.studies.selection import Selection

SELECTIONS = ("udr",)  # the ways to choose among runs; checked here so --help need not import torch


def check_selection(select: str | None) -> None:
    if select is not None and select not in SELECTIONS:
        raise fail(f"--select {select!r}: choose {', '.join(SELECTIONS)}", 2)


def print_selections(groups: list[tuple[list[Path], Selection]]) -> None:
    """One table per group: each run's UDR (Spearman, and the Lasso variant), best first, the selected run
    marked."""
    for _, selection in groups:
        table = Table(
            title=f"UDR of {len(selection.runs)} runs of one setting (selected: {selection.selected})"
        )
        for column in ("run", "udr", "udr_lasso", ""):
            table.add_column(column)
        ranked = sorted(zip(selection.runs, selection.udr, selection.udr_lasso), key=lambda r: -r[1])
        for name, value, lasso in ranked:
            table.add_row(
                name, f"{value:.3f}", f"{lasso:.3f}", "selected" if name == selection.selected else ""
            )
        out.print(table)
