"""Scoring a checkpoint: every metric its dataset supports, gathered into one report with its settings.

Each metric is a module of this package, found by `registry`; the intermediate results several metrics read
(the codes of drawn factors, the mutual-information matrix, the labelled sample, the held-out pass) are
computed once per evaluation by `context.Evaluation`. Everything random is drawn from `seed`, so a report is
reproducible.

Layer 3, beside `jvae.use` and `jvae.runs`. May import: layers 0-2 (`jvae.base`, `jvae.data`, `jvae.trackers`, `jvae.modeling`, `jvae.kinds`, `jvae.fast`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jvae.base.version import __version__
from jvae.data.capabilities import ground_truth, labels_of
from jvae.data.sources import ImageSource
from jvae.evaluation.context import Evaluation, labelled_codes, representation
from jvae.evaluation.heldout import elbo_on, heldout_pass
from jvae.evaluation.information import as_table, factor_information
from jvae.evaluation.registry import METRICS, Metric, in_report_order
from jvae.modeling.checkpoint import LoadedCheckpoint, file_sha256
from jvae.modeling.model import JointVAE

__all__ = [
    "METRICS",
    "Metric",
    "Report",
    "default_settings",
    "elbo_on",
    "evaluate",
    "labelled_codes",
    "names_to_store",
    "representation",
    "supported",
]

Status = Callable[[str], None]


@dataclass
class Report:
    metrics: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    factor_units: list[dict[str, Any]] = field(default_factory=list)
    mi_matrix: list[list[float]] | None = None  # (K, D) normalised MI, factors x code columns
    unit_kl: dict[str, float] = field(default_factory=dict)


def supported(source: ImageSource, model: JointVAE | None = None) -> list[str]:
    """The metrics this dataset (and model) can report: those whose needs it meets (factors, labels, and for
    class_split a class-conditional model)."""
    offered = {
        "factors": ground_truth(source) is not None,
        "labels": labels_of(source) is not None,
        "classes": model is not None and bool(model.classes),
    }
    return [name for name, metric in METRICS.items() if all(offered[need] for need in metric.needs)]


def default_settings(fast: bool) -> dict[str, int]:
    """disentanglement_lib's sample counts, or a tenth of them with `fast`."""
    scale = 10 if fast else 1
    return {
        "num_train": 10000 // scale,
        "num_eval": 5000 // scale,
        "num_variance_estimate": 10000 // scale,
        "mig_points": 10000 // scale,
        "heldout_points": 2048 // (2 if fast else 1),
    }


def evaluate(
    loaded: LoadedCheckpoint,
    checkpoint_path: Path,
    source: ImageSource,
    device: torch.device,
    chosen: list[str] | None = None,
    seed: int = 0,
    fast: bool = False,
    status: Status | None = None,
) -> Report:
    """Every metric in `chosen` (default: all the dataset supports)."""
    available = supported(source, loaded.model)
    names = [n for n in (chosen or available) if n in available]
    counts = default_settings(fast)
    model = loaded.model.to(device).eval()
    report = Report(settings=_settings(names, counts, source, checkpoint_path, seed, fast))
    say = status or (lambda text: None)
    evaluation = Evaluation(model, loaded.preset, source, device, seed, counts, say)
    for metric in in_report_order(names):
        if metric.applies(model):
            if metric.progress:
                say(metric.progress)
            report.metrics[metric.name] = metric.compute(evaluation)
    if evaluation.has(heldout_pass):
        report.unit_kl = evaluation.shared(heldout_pass).per_unit
    if evaluation.has(factor_information):
        report.mi_matrix, report.factor_units = as_table(evaluation.shared(factor_information))
    return report


def _settings(
    names: list[str], counts: dict[str, int], source: ImageSource, checkpoint: Path, seed: int, fast: bool
) -> dict[str, Any]:
    """What a report was computed with, so that it can be repeated and compared."""
    import sklearn

    return {
        "seed": seed,
        "fast": fast,
        "metrics": names,
        "counts": counts,
        "dataset": source.description,
        "representation": "continuous means, then each discrete variable's argmax",
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint),
        "versions": {
            "jvae": __version__,
            "torch": str(torch.__version__),
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
        },
    }


def names_to_store(report: Report) -> dict[str, str]:
    """Unit address -> factor name, for factors a unit clearly carries (a unit carrying two keeps the stronger)."""
    chosen: dict[str, tuple[str, float]] = {}
    for entry in report.factor_units:
        if entry["clear"] and (
            entry["unit"] not in chosen or chosen[entry["unit"]][1] < entry["normalised_mi"]
        ):
            chosen[entry["unit"]] = (entry["factor"], entry["normalised_mi"])
    return {unit: factor for unit, (factor, _) in chosen.items()}
