"""Datasets: from a preset's data section to an ImageSource (and, where known, its factors and labels).

`registry` lists them; each module beside it loads one (or one family)."""

from __future__ import annotations

from jvae_cli.data.registry import DATASETS, open_dataset
from jvae_cli.data.sources import ImageSource

__all__ = ["DATASETS", "ImageSource", "open_dataset"]
