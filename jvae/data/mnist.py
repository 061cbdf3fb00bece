"""MNIST and FashionMNIST in torchvision's layout, resized once from 28x28 to the preset's size as the paper does."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from jvae.base.errors import DataError
from jvae.data.locations import Layout, data_root, not_found
from jvae.data.registry import Dataset
from jvae.data.sources import TensorImages

if TYPE_CHECKING:
    from jvae.base.sections import DataSection

_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
LAYOUTS = {
    name: Layout(
        name,
        f"{folder}/raw/train-images-idx3-ubyte and train-labels-idx1-ubyte",
        "on a connected machine pass --set data.download=true",
    )
    for name, folder in _CLASSES.items()
}


def load_mnist(
    dataset: str, root: Path, channels: int, image_size: int, download: bool, split: str = "all"
) -> TensorImages:
    """The 60000 training images (split 'all' or 'train', what the paper trains on) or the 10000 test images."""
    from torchvision import datasets

    folder = _CLASSES[dataset]
    cls = getattr(datasets, folder)
    if not download and not (root / folder / "raw").is_dir():
        raise not_found(LAYOUTS[dataset], root)
    if download:
        _fetch(cls, root / folder / "raw")
    try:
        train = cls(str(root), train=split != "test", download=False)
    except RuntimeError as exc:
        if "not found" in str(exc).lower():
            raise not_found(LAYOUTS[dataset], root) from None
        raise DataError(f"{root}: cannot read {folder} ({exc})") from None
    except OSError as exc:
        raise DataError(f"{root}: cannot read or fetch {folder} ({exc})") from None
    pixels = train.data.unsqueeze(1).float()  # (N, 1, 28, 28)
    resized = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear", align_corners=False)
    data = resized.round().clamp(0, 255).to(torch.uint8)
    part = "test" if split == "test" else "train"
    source = TensorImages(data, f"{folder} {part} ({root})", channels, image_size)
    source.labels = train.targets.clone()
    return source


FILE_MAX_BYTES = 64 * 2**20  # the largest released file, the training images, is 47 MB unpacked


def _fetch(cls: Any, raw: Path) -> None:
    """torchvision's files for `cls` (its `mirrors` and `resources`), through jvae's download routine and its
    limits, unpacked (within a bound) where torchvision reads them."""
    import gzip

    from jvae.base.files import write_via
    from jvae.data.download import download

    for name, md5 in cls.resources:
        target = raw / Path(name).stem
        if target.is_file():
            continue
        failure: DataError | None = None
        for mirror in cls.mirrors:
            try:
                archive = download(f"{mirror}{name}", raw / name, md5, max_bytes=FILE_MAX_BYTES)
                break
            except DataError as exc:
                failure = failure or exc
        else:
            raise failure or DataError(f"no mirror to fetch {name} from")

        def unpack(temporary: Path, archive: Path = archive) -> None:
            with gzip.open(archive, "rb") as packed, open(temporary, "wb") as out:
                while block := packed.read(1 << 20):
                    if out.tell() + len(block) > FILE_MAX_BYTES:
                        raise DataError(f"{archive} unpacks to more than {FILE_MAX_BYTES // 2**20} MiB")
                    out.write(block)

        try:
            write_via(target, unpack)
        except (OSError, EOFError) as exc:
            raise DataError(f"{archive}: cannot unpack ({exc})") from None
        finally:
            archive.unlink(missing_ok=True)


def open_mnist(config: DataSection, data_path: str | None) -> TensorImages:
    root = data_root(LAYOUTS[config.dataset], data_path, config.path, config.download)
    return load_mnist(config.dataset, root, config.channels, config.image_size, config.download, config.split)


DATASETS = tuple(
    Dataset(name, LAYOUTS[name], open_mnist, classes=10, labels=True, splits=True) for name in _CLASSES
)
