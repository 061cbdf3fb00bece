"""What `train --seeds`, `sweep` and `compare` share of `--select`: checking its value and showing the result."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from jvae.cli.console import fail, out

if TYPE_CHECKING:
    from jvae.studies.selection import Selection

# The criteria --select offers (jvae.studies.criteria holds more, for measuring); checked here so that --help
# need not import torch. A test keeps them among the criteria.
SELECTIONS = ("best", "udr", "agreement", "elbo", "recon", "information", "perplexity")
# --select best: the criterion measured to predict quality best (the manual's results: over 22 digits and MNIST
# runs in five groups, I(x; c) at the end ranked digit accuracy at a mean Spearman of +0.44, UDR at -0.42).
BEST = "information"
SHORT = {"agreement": "agree", "information": "info", "perplexity": "perp"}


def check_selection(select: str | None) -> str | None:
    """The criterion --select names (best stands for the measured best)."""
    if select is not None and select not in SELECTIONS:
        raise fail(f"--select {select!r}: choose {', '.join(SELECTIONS)}", 2)
    return BEST if select == "best" else select


def selection_step(select: str | None, select_at: str | None, keep: int) -> float | None:
    """The early step to rank the seeds at (a fraction below 1, or a step count): --select-at's, else where
    the criterion was measured to rank them already; None to select among seeds trained to the end."""
    if select is None:
        if select_at is not None or keep != 1:
            raise fail("--select-at and --keep go with --select", 2)
        return None
    if keep < 1:
        raise fail(f"--keep {keep}: at least 1", 2)
    if select_at is None:
        at = measured_early_step(select)
    elif select_at == "end":
        at = None
    else:
        try:
            at = float(select_at)
        except ValueError:
            raise fail(
                f"--select-at {select_at!r}: a fraction such as 0.25, a step count, or end", 2
            ) from None
        if not (0 < at < 1 or (at >= 1 and at.is_integer())):
            raise fail(
                f"--select-at {select_at!r}: a fraction between 0 and 1, a whole step count, or end", 2
            )
    if at is None and keep != 1:
        raise fail("--keep chooses how many seeds train on after an early selection; add --select-at", 2)
    return at


def measured_early_step(select: str) -> float | None:
    """Where the criterion was measured to rank seeds as at the end already (None: only at the end)."""
    from jvae.studies.criteria import CRITERIA

    return CRITERIA[select].early


def resumed_selection(stack_dir: Path) -> tuple[str, float, int] | None:
    """The early selection a stack being resumed was trained with (its record), so it carries on with it."""
    from jvae.studies.early_selection import resume_criterion

    return resume_criterion(stack_dir)


def print_selections(groups: list[tuple[list[Path], Selection]]) -> None:
    """One table per group: each run's figure by every criterion, best first by the chosen one, the
    selected run marked."""
    for _, selection in groups:
        when = f" at step {selection.step}" if selection.step is not None else ""
        table = Table(
            title=f"{len(selection.runs)} runs by {selection.criterion}{when} (selected: {selection.selected})"
        )
        names = [selection.criterion, *[n for n in selection.scores if n != selection.criterion]]
        table.add_column("run")
        for name in names:
            table.add_column(SHORT.get(name, name), justify="right")
        table.add_column("")
        for k in selection.ranking:
            figures = [f"{selection.scores[name][k]:.3g}" for name in names]
            mark = "selected" if selection.runs[k] == selection.selected else ""
            table.add_row(selection.runs[k], *figures, mark)
        out.print(table)
