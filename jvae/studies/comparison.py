"""One table for many runs: what `jvae compare` reads from study folders, run folders and report folders,
and the summaries and plots it makes of them (the JointVAE paper's figure 6 from one command).

A run counts as collapsed, and is left out of the summaries as the paper leaves out runs that "collapsed to
the mean", when its code carries almost nothing: a total KL below COLLAPSED_NATS on held-out images (the
evaluation report's), or in its last training line when it has no report.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jvae.base.errors import JvaeError
from jvae.base.files import write_text, write_via
from jvae.base.runfiles import (
    RunFileError,
    read_metrics,
    read_preset_summary,
    read_report,
    read_run_record,
)
from jvae.base.tables import write_csv
from jvae.evaluation.registry import headline
from jvae.runs.runfolder import METRICS, PRESET_FILE, REPORT, REPORT_JSON, RUN_RECORD, is_stack, read_stack
from jvae.studies.selection import read_run_scores
from jvae.studies.study import MANIFEST, load_study

COLLAPSED_NATS = 0.5
FIXED_COLUMNS = ["run", "preset", "kind", "seed", "overrides", "final_loss", "seconds", "collapsed"]


@dataclass
class Found:
    run_dir: Path | None
    report: Path | None
    preset: str = ""
    seed: int | None = None
    overrides: str = ""


def flatten_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """report.json's metrics as flat columns: `factorvae` (its eval accuracy), `dci` (disentanglement),
    `dci.completeness`, `mic.posX`, ..."""
    flat: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
        elif isinstance(value, dict):
            for key, inner in value.items():
                if isinstance(inner, (int, float)) and not isinstance(inner, bool):
                    flat[name if headline(name) == key else f"{name}.{key}"] = float(inner)
    return flat


def _runs_in(path: Path) -> list[Found]:
    if (path / MANIFEST).is_file():
        study, runs = load_study(path)
        fixed = set(study.sets)
        return [
            Found(
                path / spec.name,
                path / spec.name / REPORT / REPORT_JSON,
                spec.preset,
                spec.seed,
                " ".join(o for o in spec.overrides if o not in fixed),
            )
            for spec in runs
        ]
    if (path / REPORT_JSON).is_file():
        settings = read_report(path / REPORT_JSON).settings
        checkpoint = Path(settings.checkpoint or "")
        run_dir = (
            checkpoint.parent if settings.checkpoint and (checkpoint.parent / METRICS).is_file() else None
        )
        return [Found(run_dir, path / REPORT_JSON, seed=settings.seed)]
    if (path / METRICS).is_file():
        return [Found(path, path / REPORT / REPORT_JSON)]
    if is_stack(path):
        return [Found(path / name, path / name / REPORT / REPORT_JSON) for name in read_stack(path)]
    raise JvaeError(
        f"{path}: not a study folder ({MANIFEST}), a stack's folder, a run folder ({METRICS}) or a report folder"
    )


def _row(found: Found) -> dict[str, Any]:
    row: dict[str, Any] = {"run": "", "preset": found.preset, "kind": "", "seed": found.seed}
    row["overrides"] = found.overrides
    kl_total = None
    if found.run_dir is not None:
        row["run"] = found.run_dir.name
        preset_file = found.run_dir / PRESET_FILE
        if preset_file.is_file():
            preset = read_preset_summary(preset_file)
            row["kind"] = preset.kind
            row["seed"] = row["seed"] if row["seed"] is not None else preset.seed
        if (found.run_dir / METRICS).is_file():
            train, _ = read_metrics(found.run_dir / METRICS)
            if train:
                row["final_loss"] = train[-1].loss
                kl_total = sum(train[-1].kl_cont) + sum(train[-1].kl_disc)
        record = found.run_dir / RUN_RECORD
        if record.is_file():
            row["seconds"] = read_run_record(record).seconds
        row.update({k: v for k, v in read_run_scores(found.run_dir).items() if k != "selected"})
    if found.report is not None and found.report.is_file():
        metrics = read_report(found.report).metrics
        row.update(flatten_metrics(metrics))
        elbo = metrics.get("elbo")
        if isinstance(elbo, dict) and _number(elbo.get("kl_continuous")) and _number(elbo.get("kl_discrete")):
            kl_total = elbo["kl_continuous"] + elbo["kl_discrete"]
        if not row["run"]:
            row["run"] = found.report.parent.name
    row["collapsed"] = kl_total is not None and kl_total < COLLAPSED_NATS
    return row


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def collect(paths: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """A row per run, and one line per run (or folder) whose files are damaged, which the rows leave out."""
    rows, damaged = [], []
    for path in paths:
        try:
            found = _runs_in(Path(path))
        except RunFileError as exc:
            damaged.append(str(exc))
            continue
        for run in found:
            try:
                rows.append(_row(run))
            except RunFileError as exc:
                damaged.append(str(exc))
    if not rows:
        raise JvaeError(damaged[0] if damaged else "no runs found in " + ", ".join(str(p) for p in paths))
    return rows, damaged


def columns(rows: list[dict[str, Any]]) -> list[str]:
    metric_names = sorted({key for row in rows for key in row} - set(FIXED_COLUMNS))
    return FIXED_COLUMNS[:5] + metric_names + FIXED_COLUMNS[5:]


def group_key(row: dict[str, Any], by: str) -> str:
    if by in ("kind", "preset", "seed", "run"):
        return str(row.get(by, ""))
    for text in str(row.get("overrides", "")).split():  # a grid key: loss.beta
        key, _, value = text.partition("=")
        if key == by:
            return value
    return "-"


def summarise(rows: list[dict[str, Any]], metric: str, by: str) -> list[dict[str, Any]]:
    """Per group: runs, collapsed, and median, mean, spread, min, max of `metric` over the others."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(group_key(row, by), []).append(row)
    summary = []
    for name, members in groups.items():
        kept = [r[metric] for r in members if not r["collapsed"] and isinstance(r.get(metric), float)]
        entry: dict[str, Any] = {
            by: name,
            "runs": len(members),
            "collapsed": sum(bool(r["collapsed"]) for r in members),
            "n": len(kept),
        }
        if kept:
            entry.update(
                median=statistics.median(kept),
                mean=statistics.fmean(kept),
                std=statistics.pstdev(kept) if len(kept) > 1 else 0.0,
                min=min(kept),
                max=max(kept),
            )
        summary.append(entry)
    return summary


def write_outputs(
    rows: list[dict[str, Any]], summary: list[dict[str, Any]], metric: str, by: str, folder: Path
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    header = columns(rows)
    summary_header = [by, "runs", "collapsed", "n", "median", "mean", "std", "min", "max"]
    written = [folder / "runs.csv", folder / "runs.json", folder / "summary.csv", folder / "summary.json"]
    write_csv(written[0], rows, header)
    write_text(written[1], json.dumps(rows, indent=2, default=_finite) + "\n")
    write_csv(written[2], summary, summary_header)
    write_text(written[3], json.dumps({"metric": metric, "by": by, "groups": summary}, indent=2) + "\n")
    plot = folder / f"{metric.replace('/', '_')}-by-{by.replace('/', '_')}.png"
    _plot(rows, metric, by, plot)
    return [*written, plot]


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else str(value)


def _plot(rows: list[dict[str, Any]], metric: str, by: str, path: Path) -> None:
    """A box per group over its kept runs, every run a dot (collapsed runs hollow, not in the box)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(dict.fromkeys(group_key(r, by) for r in rows))
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(names) + 1.5), 4))
    kept = [
        [
            r[metric]
            for r in rows
            if group_key(r, by) == n and not r["collapsed"] and isinstance(r.get(metric), float)
        ]
        for n in names
    ]
    ax.boxplot(kept, positions=range(len(names)), widths=0.5, showfliers=False)
    jitter = np.random.RandomState(0)
    for i, name in enumerate(names):
        for row in (r for r in rows if group_key(r, by) == name and isinstance(r.get(metric), float)):
            x = i + jitter.uniform(-0.12, 0.12)
            if row["collapsed"]:
                ax.scatter(x, row[metric], facecolors="none", edgecolors="grey", zorder=3)
            else:
                ax.scatter(x, row[metric], color="#4C72B0", zorder=3)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlabel(by)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by {by} (hollow: collapsed, left out)")
    fig.tight_layout()
    write_via(path, lambda temporary: fig.savefig(temporary, dpi=100, format="png"))
    plt.close(fig)
