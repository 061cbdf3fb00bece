"""Metrics, one module each, found here by name.

Each metric module in `jvae.evaluation` defines `METRIC`: its `--metrics` name, its title, what it needs
from the dataset and the model, its computation and, where it has one, its headline figure and what it adds to
the evaluations made while training. `jvae evaluate`, the report, `jvae compare`, the training monitor and the
manual's metrics page ask this registry and never name a metric, so a new metric is one new module.

Metric modules import from `registry`, `context` and the modules of shared results (`sampling`,
`information`, `heldout`), never from the package itself, which is still being imported when they are found.

UDR (`jvae.studies.udr`) is not here: it scores a run against the other runs of its setting, so one checkpoint
and a dataset cannot give it; `--select udr` computes it and `compare` reads it from each run's udr.json.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

    from jvae.data.sources import ImageSource
    from jvae.evaluation.context import Evaluation
    from jvae.modeling.model import JointVAE
    from jvae.modeling.presets import Preset

Need = Literal["factors", "labels", "classes"]
NEEDS_TEXT = {"factors": "ground-truth factors", "labels": "labels", "classes": "a class-conditional model"}


@dataclass(frozen=True)
class Training:
    """What a metric reads when the monitor evaluates a model while it trains (`train.eval_every`)."""

    model: JointVAE
    preset: Preset
    source: ImageSource  # the training images
    device: torch.device
    seed: int  # the evaluation's own seed, apart from every seed training draws from
    held_out: ImageSource | None  # the labelled test split, where the dataset publishes one


def _any_model(model: JointVAE) -> bool:
    return True


@dataclass(frozen=True)
class Metric:
    """Everything jvae needs to know about one metric."""

    name: str  # the `--metrics` name and the key in report.json
    title: str  # how report.md and the printed table name it
    definition: str  # its line in the manual's metrics page: what it measures, whose definition it follows
    compute: Callable[[Evaluation], Any]  # a number, or a dict of them (report.json keeps it as it is)
    listed: int  # where it stands among the metrics: `--metrics` choices, the manual, supported metrics
    reported: int  # where it stands in a report (metrics reading one shared result sit together)
    needs: tuple[Need, ...] = ()  # what the dataset (factors, labels) and model (classes) must offer
    applies: Callable[[JointVAE], bool] = _any_model  # False: this model has nothing to score; left out
    headline: str | None = None  # of a dict: the key `compare` shows under the metric's own name
    progress: str | None = None  # printed before computing it; None where a shared result says its own line
    during_training: Callable[[Training], dict[str, Any] | None] | None = None  # fields of an eval line

    @property
    def needs_text(self) -> str:
        return " and ".join(NEEDS_TEXT[need] for need in self.needs) or "any dataset"


def first_paragraph(function: Callable[..., Any]) -> str:
    """A docstring's first paragraph on one line: a metric's definition, written once beside its code."""
    return " ".join((inspect.getdoc(function) or "").split("\n\n")[0].split())


def _discover() -> dict[str, Metric]:
    import jvae.evaluation as package

    found: list[Metric] = []
    for module in pkgutil.iter_modules(package.__path__):
        if module.name == "registry":
            continue
        metric = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), "METRIC", None)
        if isinstance(metric, Metric):
            found.append(metric)
    return {metric.name: metric for metric in sorted(found, key=lambda metric: metric.listed)}


METRICS: dict[str, Metric] = _discover()


def in_report_order(names: Iterable[str]) -> list[Metric]:
    return sorted((METRICS[name] for name in names), key=lambda metric: metric.reported)


def title(name: str) -> str:
    return METRICS[name].title if name in METRICS else name


def headline(name: str) -> str | None:
    """The key of metric `name`'s dict that stands for the whole metric in flat tables, if it has one."""
    return METRICS[name].headline if name in METRICS else None
