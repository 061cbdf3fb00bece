"""Datasets: from a preset's data section to an ImageSource (and, where known, its factors and labels).

`registry` lists them; each module beside it loads one (or one family).

Layer 1. May import: `jvae.base`.
"""

from __future__ import annotations

from jvae.data.registry import DATASETS, open_dataset
from jvae.data.sources import ImageSource

__all__ = ["DATASETS", "ImageSource", "open_dataset"]
