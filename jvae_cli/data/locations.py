"""Where each dataset is looked for, and what to tell a user when it is not there.

Order: `--data PATH`, then the preset's `data.path`, then `$JVAE_DATA/<standard folder>`. A miss names the files
jvae expected, the layout, and how to get them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from jvae_cli.errors import DataNotFoundError


@dataclass(frozen=True)
class Layout:
    folder: str  # standard sub-folder of $JVAE_DATA
    expected: str  # what must be inside it
    how_to_get: str


LAYOUTS = {
    "dsprites": Layout(
        "dsprites",
        "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
        "--set data.download=true fetches it, or use --set data.source=generated",
    ),
    "mnist": Layout(
        "mnist",
        "MNIST/raw/train-images-idx3-ubyte and train-labels-idx1-ubyte",
        "on a connected machine pass --set data.download=true",
    ),
    "fashion-mnist": Layout(
        "fashion-mnist",
        "FashionMNIST/raw/train-images-idx3-ubyte and train-labels-idx1-ubyte",
        "on a connected machine pass --set data.download=true",
    ),
    "chairs": Layout(
        "chairs",
        "rendered_chairs/<chair>/renders/image_KKK_pPPP_tTTT_rRRR.png",
        "download rendered_chairs.tar from https://www.di.ens.fr/willow/research/seeing3Dchairs/",
    ),
    "celeba": Layout(
        "celeba",
        "img_align_celeba/*.jpg (optionally list_attr_celeba.txt, list_eval_partition.txt)",
        "download it from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html",
    ),
    "mpi3d": Layout(
        "mpi3d",
        "mpi3d_toy.npz (or mpi3d_realistic.npz, mpi3d_real.npz)",
        "download it from https://github.com/rr-learning/disentanglement_dataset",
    ),
    "digits": Layout("digits", "nothing: scikit-learn ships it", "pip install scikit-learn"),
    "folder": Layout("folder", "a directory tree of images", "pass --data DIR"),
}


def data_root(dataset: str, override: str | None, preset_path: str | None, download: bool = False) -> Path:
    """The path the user pointed at for `dataset`, or the standard folder under $JVAE_DATA; a dataset to be
    downloaded with neither goes to the user's cache folder."""
    if override:
        return Path(override).expanduser()
    if preset_path:
        return Path(preset_path).expanduser()
    env = os.environ.get("JVAE_DATA")
    if env:
        return Path(env).expanduser() / LAYOUTS[dataset].folder
    if download:
        from jvae_cli.data.cache import cache_root

        return cache_root() / "data" / LAYOUTS[dataset].folder
    raise not_found(dataset, None)


def not_found(dataset: str, looked_at: Path | None) -> DataNotFoundError:
    layout = LAYOUTS[dataset]
    where = f"{looked_at}" if looked_at is not None else f"$JVAE_DATA/{layout.folder}"
    return DataNotFoundError(
        f"data not found: put {layout.expected} at {where}, or pass --data PATH ({layout.how_to_get})"
    )
