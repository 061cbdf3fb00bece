"""Users' own image files, read and preprocessed the way a checkpoint's model expects them.

Preprocessing comes from the checkpoint's preset (channels and size), so commands never need the preset
again: the image is converted to greyscale or RGB (16-bit images scaled to 8 bits, an alpha channel
dropped), centre-cropped to a square and resized with a box filter (area averaging, as the datasets are
downsized). Animated images use their first frame.

Decoding is bounded before it starts: an image file above MAX_FILE_BYTES or an image whose header promises
more than MAX_PIXELS pixels is refused with one line (a few hundred bytes of PNG can promise gigabytes of
pixels), so a hostile or mistaken file cannot exhaust memory. Bytes that arrive another way (an upload to
`jvae explore`) go through the same checks under their own size limit.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from jvae.base.errors import JvaeError

MAX_PIXELS = 40_000_000  # 40 megapixels: a 7300x5500 photograph; about 0.5 GB at most while converting
MAX_FILE_BYTES = 256 * 1024 * 1024
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm"}


class ImageReadError(JvaeError):
    """An image file that is missing or cannot be decoded."""


def image_files(inputs: Iterable[Path]) -> list[Path]:
    """Image files named directly, plus every image below each directory (sorted, so runs are repeatable)."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise ImageReadError(f"input not found: {path}")
    return found


def _to_8bit(picture: Image.Image) -> Image.Image:
    """16- and 32-bit greyscale scaled to 0..255 (PIL's own conversion would clip everything above 255)."""
    if picture.mode.startswith("I;16") or picture.mode in ("I", "F"):
        array = np.asarray(picture, dtype=np.float32)
        top = 65535.0 if picture.mode.startswith("I;16") else max(float(array.max()), 1.0)
        return Image.fromarray(np.clip(array / top * 255.0, 0, 255).round().astype(np.uint8), mode="L")
    return picture


def _check_pixels(name: str, opened: Image.Image, max_pixels: int = MAX_PIXELS) -> None:
    width, height = opened.size
    if width * height > max_pixels:
        raise ImageReadError(
            f"{name} is {width}x{height} ({width * height / 1e6:.0f} megapixels); jvae reads images up to "
            f"{max_pixels // 1_000_000} megapixels here: downscale it first"
        )


def load_image(
    path: Path, channels: int, image_size: int, crop: tuple[int, int, int, int] | None = None
) -> torch.Tensor:
    """One image as a float tensor (C, H, W) in [0, 1]; `crop` (left, top, right, bottom) replaces the
    default centre square, for datasets with a documented crop."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ImageReadError(
            f"{path} is {size / 2**20:.0f} MiB; jvae reads image files up to {MAX_FILE_BYTES // 2**20} MiB"
        )
    return _decode(path, str(path), f"image {path}", channels, image_size, crop)


def image_from_bytes(
    data: bytes, name: str, channels: int, image_size: int, max_bytes: int, max_pixels: int = MAX_PIXELS
) -> torch.Tensor:
    """An image that arrived as bytes (an upload), read with every check a file gets, under `max_bytes`
    and `max_pixels`."""
    if len(data) > max_bytes:
        raise ImageReadError(
            f"{name} is {len(data) / 2**20:.1f} MiB; images up to {max_bytes / 2**20:.0f} MiB are read here"
        )
    return _decode(io.BytesIO(data), name, f"{name} as an image", channels, image_size, None, max_pixels)


def _decode(
    source: Path | BinaryIO,
    name: str,
    what: str,
    channels: int,
    image_size: int,
    crop: tuple[int, int, int, int] | None,
    max_pixels: int = MAX_PIXELS,
) -> torch.Tensor:
    """Decode, refusing more than `max_pixels` before any pixel is unpacked, then convert, crop and resize;
    `name` is the file's name in messages, `what` the thing that could not be read."""
    try:
        with warnings.catch_warnings():  # the size is checked below, in jvae's words
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as opened:
                _check_pixels(name, opened, max_pixels)
                opened.seek(0)
                opened.load()
                picture = _to_8bit(opened).convert("L" if channels == 1 else "RGB")  # before the file closes
    except Image.DecompressionBombError:
        raise ImageReadError(
            f"{name} is larger than {MAX_PIXELS // 1_000_000} megapixels, jvae's limit per image"
        ) from None
    except UnidentifiedImageError as exc:
        detail = str(exc) if isinstance(source, Path) else "not an image format jvae reads"
        raise ImageReadError(f"cannot read {what}: {detail}") from None
    except (OSError, ValueError, SyntaxError, MemoryError) as exc:
        raise ImageReadError(f"cannot read {what}: {exc}") from None
    return from_picture(picture, channels, image_size, crop)


def from_picture(
    picture: Image.Image, channels: int, image_size: int, crop: tuple[int, int, int, int] | None = None
) -> torch.Tensor:
    """A decoded picture as a float tensor (C, H, W) in [0, 1], converted, cropped and resized as every image
    jvae reads is (a file, an upload, a PIL image handed to the Python API)."""
    mode = "L" if channels == 1 else "RGB"
    if picture.mode != mode:
        picture = _to_8bit(picture).convert(mode)
    if crop is None:
        side = min(picture.size)
        left, top = (picture.width - side) // 2, (picture.height - side) // 2
        crop = (left, top, left + side, top + side)
    picture = picture.crop(crop)
    if picture.size != (image_size, image_size):
        picture = picture.resize((image_size, image_size), Image.Resampling.BOX)
    array = np.asarray(picture, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[None]
    else:
        array = array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def load_batches(
    paths: list[Path], channels: int, image_size: int, batch_size: int = 256, skip_unreadable: bool = False
) -> Iterator[tuple[list[Path], torch.Tensor, list[tuple[Path, str]]]]:
    """Batches of (paths, images (B, C, H, W), unreadable files with reasons), holding one batch at a time."""
    for start in range(0, len(paths), batch_size):
        good, tensors, bad = [], [], []
        for path in paths[start : start + batch_size]:
            try:
                tensors.append(load_image(path, channels, image_size))
                good.append(path)
            except ImageReadError as exc:
                if not skip_unreadable:
                    raise
                bad.append((path, str(exc)))
        images = torch.stack(tensors) if tensors else torch.zeros(0, channels, image_size, image_size)
        yield good, images, bad
