"""Images and animations on disk: grids with row labels, looping GIFs, PNGs, all written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from jvae.base.files import write_via

BACKGROUND = 32  # dark grey between tiles, so black images keep their edges
LABEL_WIDTH = 96


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float images (..., C, H, W) in [0, 1] to uint8 (..., H, W, 3)."""
    array = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    array = np.moveaxis(array, -3, -1)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def grid(tiles: np.ndarray, labels: Sequence[str] | None = None, scale: int = 1, pad: int = 2) -> np.ndarray:
    """Tiles (rows, cols, H, W, 3) uint8 as one picture, each row headed by its label when labels are given."""
    rows, cols, height, width, _ = tiles.shape
    if scale > 1:
        tiles = tiles.repeat(scale, axis=2).repeat(scale, axis=3)
        height, width = height * scale, width * scale
    left = LABEL_WIDTH if labels else 0
    out = np.full((pad + rows * (height + pad), left + pad + cols * (width + pad), 3), BACKGROUND, np.uint8)
    for r in range(rows):
        for c in range(cols):
            y, x = pad + r * (height + pad), left + pad + c * (width + pad)
            out[y : y + height, x : x + width] = tiles[r, c]
    if labels:
        picture = Image.fromarray(out)
        draw = ImageDraw.Draw(picture)
        font = ImageFont.load_default()
        for r, label in enumerate(labels):
            y = pad + r * (height + pad) + height // 2
            for line_no, line in enumerate(label.split("\n")):
                draw.text((4, y - 12 + 12 * line_no), line, fill=(235, 235, 235), font=font)
        out = np.asarray(picture)
    return out


def write_gif(frames: Sequence[np.ndarray], path: Path, duration_ms: int = 100, bounce: bool = True) -> None:
    """A looping GIF; `bounce` plays the frames forward then back so the loop has no jump."""
    sequence = list(frames)
    if bounce and len(sequence) > 2:
        sequence = sequence + sequence[-2:0:-1]
    pictures = [Image.fromarray(np.asarray(frame, dtype=np.uint8)) for frame in sequence]

    def save(
        temporary: Path,
    ) -> None:  # Pillow directly: a failed write leaves no writer to flush again later
        pictures[0].save(
            temporary, format="GIF", save_all=True, append_images=pictures[1:], duration=duration_ms, loop=0
        )

    write_via(path, save)


def write_png(image: np.ndarray, path: Path) -> None:
    write_via(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))
