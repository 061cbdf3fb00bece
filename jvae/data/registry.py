"""Datasets, one module each, found here by name.

Each dataset module in `jvae.data` defines `DATASET` (or `DATASETS`, for modules that load a family):
its name, where its files go (its layout, quoted in the "data not found" message), how to open it from a
preset's data section, and what it offers besides images. The preset schema takes its list of names from
here, so a new dataset is one new module plus a preset.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jvae.base.errors import DataError
from jvae.data.locations import Layout

if TYPE_CHECKING:
    from jvae.base.sections import DataSection
    from jvae.data.sources import ImageSource


@dataclass(frozen=True)
class Dataset:
    name: str
    layout: Layout
    open: Callable[[DataSection, str | None], ImageSource]  # (data section, --data PATH) -> images
    classes: int | None = None  # label classes a class-conditional model can condition on
    labels: bool = False  # every image has a label (a class or an identity): the label metrics apply
    factors: bool = False  # known generative factors: the disentanglement metrics apply
    attributes: bool = False  # named binary attributes per image, where its annotation file is present
    splits: bool = False  # data.split selects a published train or test part
    generated: bool = False  # data.source = "generated" draws it instead of reading files


def _discover() -> dict[str, Dataset]:
    """Every dataset module beside this one (found by path, so the registry never imports its package)."""
    found: dict[str, Dataset] = {}
    for module in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if module.name == "registry":
            continue
        loaded = importlib.import_module(f"{__package__}.{module.name}")
        entries = getattr(loaded, "DATASETS", ()) + ((loaded.DATASET,) if hasattr(loaded, "DATASET") else ())
        found.update((entry.name, entry) for entry in entries if isinstance(entry, Dataset))
    return found


DATASETS: dict[str, Dataset] = _discover()


def dataset_named(name: str) -> Dataset:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def open_dataset(config: DataSection, data_path: str | None = None) -> ImageSource:
    """The dataset a preset names, found through --data, data.path or $JVAE_DATA."""
    return dataset_named(config.dataset).open(config, data_path)
