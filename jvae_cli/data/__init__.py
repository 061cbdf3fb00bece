"""Datasets: from a preset's data section to an ImageSource (and, where known, its ground-truth factors)."""

from __future__ import annotations

from pathlib import Path

from jvae_cli.data import dsprites
from jvae_cli.data.celeba import load_celeba
from jvae_cli.data.chairs import load_chairs
from jvae_cli.data.digits import load_digits
from jvae_cli.data.download import download
from jvae_cli.data.dsprites import FILE_NAME as DSPRITES_FILE
from jvae_cli.data.dsprites import FileDSprites, GeneratedDSprites
from jvae_cli.data.folder import load_folder
from jvae_cli.data.locations import data_root, not_found
from jvae_cli.data.mnist import load_mnist
from jvae_cli.data.mpi3d import load_mpi3d
from jvae_cli.data.sources import ImageSource
from jvae_cli.errors import DataError, DataNotFoundError
from jvae_cli.presets import DataConfig

__all__ = ["ImageSource", "open_dataset"]


def _dsprites_file(root: Path) -> Path:
    for candidate in (root, root / DSPRITES_FILE, root / "dsprites" / DSPRITES_FILE):
        if candidate.is_file():
            return candidate
    raise not_found("dsprites", root)


def open_dataset(config: DataConfig, data_path: str | None = None) -> ImageSource:
    """The dataset a preset names, found through --data, data.path or $JVAE_DATA."""
    if config.dataset == "dsprites":
        if config.source == "generated":
            return GeneratedDSprites(config.channels, config.image_size)
        root = data_root("dsprites", data_path, config.path, config.download)
        try:
            path = _dsprites_file(root)
        except DataNotFoundError:
            if not config.download:
                raise
            target = root if root.suffix == ".npz" else root / DSPRITES_FILE
            path = download(dsprites.URL, target, dsprites.MD5)
        return FileDSprites(path, config.channels, config.image_size)
    if config.dataset in ("mnist", "fashion-mnist"):
        root = data_root(config.dataset, data_path, config.path, config.download)
        return load_mnist(
            config.dataset, root, config.channels, config.image_size, config.download, config.split
        )
    if config.dataset == "digits":
        return load_digits(config.channels, config.image_size)
    if config.dataset == "folder":
        return load_folder(
            data_root("folder", data_path, config.path),
            config.channels,
            config.image_size,
            config.on_unreadable,
        )
    root = data_root(config.dataset, data_path, config.path)
    if config.dataset == "chairs":
        return load_chairs(root, config.channels, config.image_size, config.split)
    if config.dataset == "celeba":
        return load_celeba(root, config.channels, config.image_size, config.split)
    if config.dataset == "mpi3d":
        return load_mpi3d(root, config.channels, config.image_size)
    raise DataError(f"unknown dataset {config.dataset!r}")
