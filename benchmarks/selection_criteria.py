"""Which label-free criterion predicts a run's quality, and how early: every criterion of
`jvae.studies.criteria` on every run of each group, at early checkpoints and at the end, against a label metric
read at the end, as Spearman rank correlations.

A group is the run folders of one setting (differing in their seed), for example the members of one
`jvae train --seeds` stack. The runs must keep their early checkpoints (`--set train.keep_checkpoints=N`
with `train.checkpoint_every` dividing the early steps); the label metric is the last value of a key of the
`"eval"` lines of metrics.jsonl (`accuracy`, digit accuracy where the dataset has labels) or a metric of the
run's `jvae evaluate` report (`--label factorvae` reads report/report.json).

    python benchmarks/selection_criteria.py --group DIR/paper-seed{0..7} --at 0.1 0.25 1 \
        --label accuracy --json out.json

It prints, per group and step, each criterion's figure for every run, its Spearman correlation with the label
(criteria where lower is better are negated first, so a positive correlation always means the criterion
ranks like the label), and where the run it would pick falls among the runs (its label's percentile).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from jvae.modeling.checkpoint import read_checkpoint
from jvae.runs.runfolder import CHECKPOINT, METRICS, kept_checkpoint
from jvae.studies.criteria import CRITERIA, load_group, score


def label_of(run_dir: Path, key: str) -> float:
    report = run_dir / "report" / "report.json"
    if key != "accuracy" and report.is_file():
        metrics = json.loads(report.read_text())["metrics"]
        value = metrics.get(key)
        if isinstance(value, dict):
            value = value.get("score", value.get(key))
        if isinstance(value, int | float):
            return float(value)
    last = None
    for line in (run_dir / METRICS).read_text().splitlines():
        record = json.loads(line)
        if record.get("split") == "eval" and key in record:
            last = record[key]
    if last is None:
        raise SystemExit(f"{run_dir}: no {key!r} in its eval lines or report")
    return float(last[0] if isinstance(last, list) else last)


def label_at(run_dir: Path, key: str, step: int) -> float | None:
    """The label metric as the run's own eval line of `step` read it, where it has one."""
    for line in (run_dir / METRICS).read_text().splitlines():
        record = json.loads(line)
        if record.get("split") == "eval" and record.get("step") == step and key in record:
            value = record[key]
            return float(value[0] if isinstance(value, list) else value)
    return None


def checkpoint_at(run_dir: Path, step: int, total: int) -> Path:
    path = run_dir / CHECKPOINT if step >= total else kept_checkpoint(run_dir, step)
    if not path.is_file():
        raise SystemExit(f"{path}: missing (train with train.keep_checkpoints covering step {step})")
    return path


def percentile(values: list[float], pick: int) -> float:
    """The fraction of the other runs whose label is at or below the picked run's."""
    others = [v for k, v in enumerate(values) if k != pick]
    return sum(v <= values[pick] for v in others) / len(others)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", nargs="+", action="append", required=True, type=Path)
    parser.add_argument(
        "--at",
        nargs="+",
        type=float,
        default=[0.1, 0.25, 1.0],
        help="fractions of the schedule (1: the end), or steps (above 1)",
    )
    parser.add_argument("--label", default="accuracy")
    parser.add_argument("--data", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    results = []
    for runs in args.group:
        total = read_checkpoint(runs[0] / CHECKPOINT).step  # the finished runs' last step
        labels = [label_of(r, args.label) for r in runs]
        print(
            f"\n## {runs[0].parent.name}: {len(runs)} runs, {args.label}: "
            + " / ".join(f"{v:.3f}" for v in labels)
        )
        print(f"mean {statistics.mean(labels):.3f}, spread {max(labels) - min(labels):.3f}\n")
        print("| step | criterion | per run | Spearman with the label | pick's percentile |")
        print("|---|---|---|---|---|")
        for fraction in args.at:
            step = int(fraction) if fraction > 1 else total if fraction == 1 else int(round(total * fraction))
            found = [label_at(r, args.label, step) for r in runs]
            early = [v for v in found if v is not None]
            if step < total and len(early) == len(runs):
                rho = float(spearmanr(early, labels).statistic)
                listed = " / ".join(f"{v:.3f}" for v in early)
                print(
                    f"| {step} | ({args.label} itself, needs labels) | {listed} | {rho:+.2f} | "
                    f"{percentile(labels, int(np.argmax(early))):.2f} |"
                )
            group = load_group([checkpoint_at(r, step, total) for r in runs], args.data, torch.device("cpu"))
            figures = score(group)
            for name, values in figures.items():
                criterion = CRITERIA[name]
                signed = values if criterion.higher else [-v for v in values]
                rho = float(spearmanr(signed, labels).statistic)
                pick = criterion.best(values)
                share = percentile(labels, pick)
                per_run = " / ".join(f"{v:.3g}" for v in values)
                print(f"| {step} | {name} | {per_run} | {rho:+.2f} | {share:.2f} |")
                results.append(
                    {
                        "group": [str(r) for r in runs],
                        "step": step,
                        "fraction": fraction,
                        "criterion": name,
                        "values": values,
                        "labels": labels,
                        "spearman": rho,
                        "pick": runs[pick].name,
                        "pick_percentile": share,
                    }
                )
    if len(args.group) > 1:
        print("\n## Every group: Spearman per group (mean), and the mean percentile of the pick\n")
        print("| at | criterion | Spearman per group | mean | pick's mean percentile |")
        print("|---|---|---|---|---|")
        for fraction in args.at:
            for name in CRITERIA:
                rows = [r for r in results if r["criterion"] == name and r["fraction"] == fraction]
                if not rows:
                    continue
                rhos = [r["spearman"] for r in rows]
                shares = statistics.mean(r["pick_percentile"] for r in rows)
                listed = " / ".join(f"{v:+.2f}" for v in rhos)
                print(f"| {fraction:g} | {name} | {listed} | {statistics.mean(rhos):+.2f} | {shares:.2f} |")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
