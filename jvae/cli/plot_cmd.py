"""`jvae plot`: training curves of one or more runs."""

from __future__ import annotations

from pathlib import Path

import typer

from jvae.cli.common import output_path
from jvae.cli.console import err, fail, out, user_errors


def plot(
    runs: list[Path] = typer.Argument(..., help="Run folders (each holding metrics.jsonl)."),
    out_path: Path = typer.Option(Path("curves.png"), "--out", "-o", help="Output .png."),
) -> None:
    """Plot training curves of one or more runs into one figure.

    Loss, reconstruction, KL against capacity, KL per unit, throughput and evaluation ELBO over steps;
    several runs overlaid, one colour each. A run whose metrics are damaged is one error line and left out;
    the others are still drawn (exit code 1)."""
    from jvae.runs.curves import plot_runs, read_runs

    output_path(out_path, {".png"})
    missing = [run for run in runs if not run.is_dir()]
    if missing:
        raise fail(f"not a run folder: {missing[0]}", 1)
    with user_errors():
        readable, damaged = read_runs(runs)
        curves = plot_runs([run for run, _, _ in readable], out_path)
    out.print(f"wrote {out_path}: curves of {', '.join(curves)}")
    for line in damaged:
        err.print(f"error: {line}", markup=False, style="red")
    if damaged:
        raise typer.Exit(1)
