"""`jvae compare`: one table of many runs, summaries per group and a plot."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.table import Table

from jvae.cli.console import err, fail, out, user_errors
from jvae.cli.selecting import check_selection, print_selections


def compare(
    paths: list[Path] = typer.Argument(..., help="Study folders, run folders or report folders."),
    by: str = typer.Option("kind", "--by", help="Group by kind, preset, seed or a grid key (loss.beta)."),
    metric: str = typer.Option(
        None, "--metric", help="The metric summarised [default: factorvae, else the first]."
    ),
    out_dir: Path = typer.Option(
        None, "--out", "-o", help="Write runs.csv/.json, summary.csv/.json and a plot here."
    ),
    select: str | None = typer.Option(
        None,
        "--select",
        metavar="CRITERION",
        help="A criterion (best, udr, agreement, elbo, recon, information, perplexity): in each study or stack "
        "folder, score the runs of each setting without labels (written to udr.json) and name the best.",
    ),
    data: str = typer.Option(None, "--data", help="--select: dataset location, as for jvae train."),
) -> None:
    """Compare runs and studies: a row per run, a summary per group.

    Every run as a row (preset, seed, overrides, every metric, final loss, wall time); per group the
    median, mean and spread of --metric with collapsed runs flagged and left out. A run whose files are
    damaged is one error line and left out; the others are still compared (exit code 1)."""
    from jvae.studies.comparison import FIXED_COLUMNS, collect, columns, summarise, write_outputs

    missing = [p for p in paths if not p.exists()]
    if missing:
        raise fail(f"not found: {missing[0]}", 1)
    select = check_selection(select)
    with user_errors():
        if select is not None:
            from jvae.studies.selection import select_in_folder

            for path in paths:
                print_selections(select_in_folder(path, data, criterion=select))
        rows, damaged = collect(paths)
        metric_names = [c for c in columns(rows) if c not in FIXED_COLUMNS]
        chosen = metric or (
            "factorvae" if "factorvae" in metric_names else (metric_names or ["final_loss"])[0]
        )
        if chosen not in metric_names and chosen != "final_loss":
            raise fail(f"--metric {chosen!r}: these runs have {', '.join(metric_names) or 'no metrics'}", 2)
        summary = summarise(rows, chosen, by)
        written = write_outputs(rows, summary, chosen, by, out_dir) if out_dir is not None else []
    shown = ["run", "kind", "seed", "overrides", chosen, "final_loss", "seconds", "collapsed"]
    headers = ["run", "kind", "seed", "overrides", "metric", "loss", "seconds", "collapsed"]
    table = Table(title=f"runs: {len(rows)}; metric: {chosen}", box=box.SIMPLE_HEAD, show_edge=False)
    for header in headers:
        table.add_column(header, overflow="fold", no_wrap=header not in ("run", "overrides"))
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in shown))
    if not out.is_terminal:
        out.width = max(out.width, 200)  # a pipe or a file gets whole rows, not folded cells
    out.print(table)
    groups = Table(title=f"{chosen} by {by} (collapsed runs left out)", box=box.SIMPLE_HEAD, show_edge=False)
    for column in [by, "runs", "collapsed", "n", "median", "mean", "std"]:
        groups.add_column(column, no_wrap=True)
    for entry in summary:
        groups.add_row(
            *(_cell(entry.get(c)) for c in [by, "runs", "collapsed", "n", "median", "mean", "std"])
        )
    out.print(groups)
    if written:
        out.print("wrote " + ", ".join(str(p) for p in written))
    if damaged:
        for line in damaged:
            err.print(f"error: {line}", markup=False, style="red")
        raise typer.Exit(1)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
