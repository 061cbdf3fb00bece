"""Trackers: callbacks that send a run's numbers and pictures to the tools people watch training in.

Each is one module here and an optional extra, so jvae itself installs neither; naming a tracker whose
extra is missing is one line saying what to install.

Layer 1. May import: `jvae.base`.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from jvae.base.callbacks import Callback
from jvae.base.errors import UsageError


@dataclass(frozen=True)
class Tracker:
    module: str  # jvae.trackers.<module> defines `build(run_dir) -> Callback`
    needs: tuple[str, ...]  # importable modules the extra installs
    extra: str  # pip install "jvae[<extra>]"


TRACKERS = {
    "tensorboard": Tracker("tensorboard", ("tensorboard",), "tensorboard"),
    "mlflow": Tracker("mlflow", ("mlflow", "sqlalchemy", "alembic"), "mlflow"),
}


def check_available(name: str) -> Tracker:
    """The tracker `name`, after checking its extra is installed (without importing it)."""
    if name not in TRACKERS:
        raise UsageError(f"unknown tracker {name!r}; choose from {', '.join(TRACKERS)}")
    tracker = TRACKERS[name]
    missing = [module for module in tracker.needs if importlib.util.find_spec(module) is None]
    if missing:
        raise UsageError(
            f"tracking with {name} needs the {tracker.extra} extra (missing {', '.join(missing)}): "
            f'pip install "jvae[{tracker.extra}]"'
        )
    return tracker


def build_trackers(names: list[str], run_dir: Path) -> list[Callback]:
    built = []
    for name in names:
        tracker = check_available(name)
        built.append(importlib.import_module(f"{__name__}.{tracker.module}").build(run_dir))
    return built
