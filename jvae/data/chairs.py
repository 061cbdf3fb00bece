"""3D Chairs (Aubry et al. 2014): `rendered_chairs/<chair>/renders/image_KKK_pPPP_tTTT_rRRR.png`.

Each chair is rendered at two elevations (p, degrees) and 31 azimuths (t, degrees); both are parsed from the
file names and exposed as ground-truth factors with the chair itself. Preprocessing (documented in the
README): greyscale, the central 400x400 square of the 600x600 render (the chair fills it; the rest is white
margin), resized to the preset's size with a box filter, decoded once into the preprocessing cache. The
held-out split is by chair: every tenth chair folder (sorted by name) is `test`, the rest `train`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from jvae.base.errors import DataError
from jvae.data.capabilities import uniform_factors
from jvae.data.folder import cached_crops
from jvae.data.locations import Layout, data_root, not_found
from jvae.data.registry import Dataset
from jvae.data.sources import TensorImages, array_source

if TYPE_CHECKING:
    from jvae.base.sections import DataSection

PATTERN = re.compile(r"image_(\d+)_p(\d+)_t(\d+)_r(\d+)\.png$")
CROP = (100, 100, 500, 500)
HELD_OUT_EVERY = 10
LAYOUT = Layout(
    "chairs",
    "rendered_chairs/<chair>/renders/image_KKK_pPPP_tTTT_rRRR.png",
    "download rendered_chairs.tar from https://www.di.ens.fr/willow/research/seeing3Dchairs/",
)


class ChairsSource:
    """The renders as an ImageSource with factors (chair, elevation, azimuth) and the chair as a label."""

    factor_names = ["chair", "elevation", "azimuth"]

    def __init__(
        self,
        images: TensorImages,
        factors: np.ndarray,
        values: dict[str, list[str] | list[int]],
        description: str,
    ) -> None:
        self.inner = images
        self.factors_of = factors  # (N, 3) class indices
        self.values = values  # degrees (and chair folder names' order) behind each class index
        self.factor_sizes = [len(values["chair"]), len(values["elevation"]), len(values["azimuth"])]
        self.description = description
        self.channels, self.image_size = images.channels, images.image_size
        self.labels = torch.from_numpy(factors[:, 0])
        self.lookup = {tuple(row): i for i, row in enumerate(factors.tolist())}

    def __len__(self) -> int:
        return len(self.inner)

    def images(self, indices: Tensor, device: torch.device) -> Tensor:
        return self.inner.images(indices, device)

    def sample_factors(self, n: int, rng: np.random.Generator | np.random.RandomState) -> np.ndarray:
        return uniform_factors(self.factor_sizes, n, rng)

    def observations(self, factors: np.ndarray, device: torch.device) -> Tensor:
        try:
            rows = [self.lookup[tuple(row)] for row in np.asarray(factors).tolist()]
        except KeyError as exc:
            raise DataError(f"no chairs render has factors {exc.args[0]}") from None
        return self.inner.images(torch.tensor(rows), device)


def load_chairs(root: Path, channels: int, image_size: int, split: str) -> ChairsSource:
    base = root / "rendered_chairs" if (root / "rendered_chairs").is_dir() else root
    chairs = sorted(p for p in base.iterdir() if (p / "renders").is_dir()) if base.is_dir() else []
    if not chairs:
        raise not_found(LAYOUT, root)
    if split != "all":
        chairs = [c for i, c in enumerate(chairs) if (i % HELD_OUT_EVERY == 0) == (split == "test")]
    files: list[Path] = []
    parsed: list[tuple[str, int, int]] = []  # (chair folder, elevation, azimuth)
    for chair in chairs:
        for path in sorted((chair / "renders").glob("*.png")):
            match = PATTERN.search(path.name)
            if match:
                files.append(path)
                parsed.append((chair.name, int(match.group(2)), int(match.group(3))))
    if not files:
        raise DataError(f"no renders named image_KKK_pPPP_tTTT_rRRR.png under {base}")
    values: dict[str, list[str] | list[int]] = {
        "chair": sorted({p[0] for p in parsed}),
        "elevation": sorted({p[1] for p in parsed}),
        "azimuth": sorted({p[2] for p in parsed}),
    }
    index = {key: {v: i for i, v in enumerate(vals)} for key, vals in values.items()}
    factors = np.array(
        [[index["chair"][c], index["elevation"][e], index["azimuth"][a]] for c, e, a in parsed]
    )
    images = array_source(
        cached_crops("chairs", files, channels, image_size, CROP), "chairs", channels, image_size
    )
    description = f"3D Chairs ({base}, {split}: {len(values['chair'])} chairs, {len(files)} renders)"
    return ChairsSource(images, factors, values, description)


def open_chairs(config: DataSection, data_path: str | None) -> ChairsSource:
    root = data_root(LAYOUT, data_path, config.path)
    return load_chairs(root, config.channels, config.image_size, config.split)


DATASET = Dataset("chairs", LAYOUT, open_chairs, labels=True, factors=True, splits=True)
