"""Pretrained models by name: `official:celeba` wherever a checkpoint path is accepted.

The JointVAE authors' five released models are fetched on first use from the official repository's public
address, checked against pinned SHA-256 sums, imported (jvae.use.official) with the unit names read off their
traversals, and kept as ordinary checkpoints under the jvae cache folder. Offline, the message says which two
files to put where; `JVAE_PRETRAINED_URL` points the download at a mirror.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from jvae.base.errors import DataError, JvaeError
from jvae.data.cache import cache_root

PREFIX = "official:"
BASE_URL = "https://raw.githubusercontent.com/Schlumberger/joint-vae/master/trained_models"
PAGE = "https://github.com/Schlumberger/joint-vae/tree/master/trained_models"
FILE_MAX_BYTES = {"specs.json": 2**20, "model.pt": 64 * 2**20}  # the released files: 1 KB and a few MB


@dataclass(frozen=True)
class Released:
    folder: str  # the folder under the official trained_models/
    model_sha256: str
    specs_sha256: str
    summary: str
    unit_names: dict[str, str] = field(default_factory=dict)  # read off traversals of the released model


RELEASED: dict[str, Released] = {
    "mnist": Released(
        "mnist",
        "6bb4cef31bdc19e36e725d57d98c91901a390dbfa11bb0c5e79a95b3d2dbd8da",
        "97dfc4658453f00c4278a51e6924992916d680efa6b84eb3b6ee681986d95ba0",
        "MNIST 32x32: 10 continuous, one 10-way (the digit)",
        {"d0": "digit", "2": "slant", "0": "width", "6": "thickness"},
    ),
    "fashion": Released(
        "fashion",
        "d3cde91b06da06b24745dbace6fa72afb3e0902542ff8eae62c2072e00344df1",
        "bf60612f86a3411b83e060cb1963a330418accdd93ab0589f4b974a9f0d4bead",
        "FashionMNIST 32x32: 10 continuous, one 10-way",
        {"d0": "garment"},
    ),
    "dsprites": Released(
        "dsprites",
        "86f4ba5b864f619ec412ed7c9906140d178128252f444ded0c949112a788e0cc",
        "0d9e6aed9f40bbbcd90fe119c6d394c6d7d2ca892224a34206882d6f0d50616d",
        "dSprites 64x64: 6 continuous, one 3-way",
        {"4": "scale", "2": "posX", "1": "posY"},  # as jvae evaluate --fast --name-units names them
    ),
    "chairs": Released(
        "chairs",
        "8d84c03186bd4a6ac5f0685a8a8f9fe97db722e6c9e43ad7ca40fefe8729891a",
        "57227e89d1d053c7828fe74b73f435ceeb0b544cb050a227389e1d04808fca7d",
        "3D Chairs 64x64 grey: 32 continuous, three 2-way",
        {"11": "azimuth", "9": "width"},
    ),
    "celeba": Released(
        "celeba",
        "4b513e2038c7ea2942637e83f7a19f6d99fd16dff1268dd337b101001008d53f",
        "5c36a9c41afd96eedda410c9096cb8c208e18363628811d959246725a79b5a58",
        "CelebA 64x64 RGB: 32 continuous, one 10-way",
        {"12": "azimuth", "7": "age", "13": "background", "6": "background_hue"},
    ),
}


class PretrainedError(JvaeError):
    """An unknown pretrained name, or one that could not be fetched or imported."""


def is_pretrained(text: str) -> bool:
    return str(text).startswith(PREFIX)


def pretrained_dir() -> Path:
    return cache_root() / "pretrained"


def released(name: str) -> Released:
    key = name.removeprefix(PREFIX)
    if key not in RELEASED:
        known = ", ".join(PREFIX + n for n in RELEASED)
        raise PretrainedError(f"unknown pretrained model {name!r}; known: {known} (see jvae pretrained)")
    return RELEASED[key]


def checkpoint_path(name: str) -> Path:
    return pretrained_dir() / f"official-{released(name).folder}.pt"


def files_folder(name: str) -> Path:
    """Where the official model.pt and specs.json are kept (and where to put them by hand when offline)."""
    return pretrained_dir() / "official" / released(name).folder


def pretrained_checkpoint(name: str) -> Path:
    """The cached jvae checkpoint of a released model, fetched, verified and imported on first use."""
    from jvae.data.download import download
    from jvae.modeling.checkpoint import file_sha256
    from jvae.use.official import import_official

    model = released(name)
    target = checkpoint_path(name)
    if target.is_file():
        return target
    folder = files_folder(name)
    base = os.environ.get("JVAE_PRETRAINED_URL", BASE_URL).rstrip("/")
    by_hand = f"offline? put model.pt and specs.json from {PAGE}/{model.folder} into {folder} and run the command again"
    fetched: list[Path] = []
    try:
        for file_name, checksum in (("specs.json", model.specs_sha256), ("model.pt", model.model_sha256)):
            path = folder / file_name
            if path.is_file():
                found = file_sha256(path)
                if found == checksum:
                    continue
                raise PretrainedError(
                    f"{path} has SHA-256 {found}, not the released file's {checksum}; remove it"
                )
            url = f"{base}/{model.folder}/{file_name}"
            download(url, path, checksum, "sha256", by_hand, max_bytes=FILE_MAX_BYTES[file_name])
            fetched.append(path)
    except DataError as exc:
        for path in fetched:  # a release is cached whole or not at all
            path.unlink(missing_ok=True)
        raise PretrainedError(str(exc)) from None
    except OSError as exc:
        raise PretrainedError(
            f"cannot write under {pretrained_dir()} ({exc.strerror}); set JVAE_CACHE"
        ) from None
    import_official(folder, target, model.folder, unit_names=model.unit_names, measure_kl=True)
    return target


def resolve(text: str | Path) -> Path:
    """A checkpoint path as given, or the cached checkpoint of a pretrained name."""
    return pretrained_checkpoint(str(text)) if is_pretrained(str(text)) else Path(text)
