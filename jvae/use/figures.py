"""Pictures made from a model: traversals (GIF frames or one PNG grid) and sample grids.

Layouts: a traversal GIF has one row per unit and one column per base code, each frame one traversal
value; a traversal PNG has one row per (unit, base) pair and one column per value. Sample grids are
square-ish, or one row per category of a discrete variable with the columns sharing continuous codes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from jvae.base.errors import UsageError
from jvae.base.media import grid, to_uint8, write_gif
from jvae.data.sources import ImageSource
from jvae.modeling.latents import (
    DEFAULT_RANGE,
    Unit,
    UnitKL,
    encode_from,
    prior_mode,
    prior_sample,
    ranked_units,
    set_unit,
    traversal_images,
    unit_address,
)
from jvae.modeling.model import JointVAE


def unit_label(unit: Unit, names: dict[str, str], kl: UnitKL | None) -> str:
    name = names.get(unit_address(unit))
    head = f"{unit.label} {name}" if name else unit.label
    return f"{head}\nKL {kl.of(unit):.2f}" if kl is not None else head


TRAVERSAL_MEMORY_LIMIT = 2 * 2**30  # bytes of decoded and drawn frames one traversal may hold


def check_traversal_size(model: JointVAE, frames: int, units: int, bases: int, scale: int) -> None:
    """Refuse, before decoding anything, a traversal whose images would not fit in memory."""
    side = model.image_size
    pixels = frames * units * bases * side * side
    needed = pixels * (4 * model.channels + 3 * scale * scale)  # float decodes, then uint8 RGB tiles
    if needed > TRAVERSAL_MEMORY_LIMIT:
        raise UsageError(
            f"this traversal would hold {needed / 2**30:.1f} GiB of images ({frames} frames x {units} units x "
            f"{bases} codes at {side * scale} px); ask for fewer --frames, --samples or units, or a smaller --scale"
        )


def traversal_frames(
    model: JointVAE,
    bases: Tensor,
    units: list[Unit],
    frames: int,
    labels: list[str],
    value_range: tuple[float, float] = DEFAULT_RANGE,
    scale: int = 1,
) -> list[np.ndarray]:
    """GIF frames (frame f sets each row's unit to its f-th value); one unit puts its base codes in rows."""
    check_traversal_size(model, frames, len(units), bases.shape[0], scale)
    images = traversal_images(model, bases, units, frames, value_range)  # (F, R, B, C, H, W)
    if len(units) == 1 and bases.shape[0] > 1:
        images = images.transpose(1, 2)  # (F, B, 1, C, H, W)
        labels = [f"{labels[0]}\nbase {b}" for b in range(bases.shape[0])]
    return [grid(to_uint8(frame), labels, scale=scale) for frame in images]


def traversal_grid(
    model: JointVAE,
    bases: Tensor,
    units: list[Unit],
    frames: int,
    labels: list[str],
    value_range: tuple[float, float] = DEFAULT_RANGE,
    scale: int = 1,
) -> np.ndarray:
    """One PNG: a row per (unit, base) pair, a column per traversal value."""
    check_traversal_size(model, frames, len(units), bases.shape[0], scale)
    images = traversal_images(model, bases, units, frames, value_range)  # (F, R, B, C, H, W)
    rows = images.permute(1, 2, 0, 3, 4, 5).flatten(0, 1)  # (R * B, F, C, H, W)
    row_labels = [label for label in labels for _ in range(bases.shape[0])]
    return grid(to_uint8(rows), row_labels, scale=scale)


def _conditioned_prior(
    model: JointVAE,
    n: int,
    generator: torch.Generator,
    device: torch.device,
    fixed: list[tuple[Unit, int]] | None,
) -> Tensor:
    codes = prior_sample(model, n, generator, device)
    for unit, category in fixed or []:
        codes = set_unit(codes, model, unit, category)
    return codes


DECODE_CHUNK = 256  # codes decoded at once: the decoder's activations grow with the batch


def check_picture_size(model: JointVAE, images: int, scale: int, what: str) -> None:
    """Refuse, before decoding anything, a picture of `images` tiles that would not fit in memory: each
    tile as uint8 RGB at `scale` three times (the tiles, the grid, the labelled picture), and one chunk of
    float decodes."""
    side = model.image_size
    needed = images * side * side * 3 * scale * scale * 3 + DECODE_CHUNK * side * side * 4 * model.channels
    if needed > TRAVERSAL_MEMORY_LIMIT:
        raise UsageError(
            f"{what} would hold {needed / 2**30:.1f} GiB of images ({images} images at {side * scale} px; at "
            f"most {TRAVERSAL_MEMORY_LIMIT / 2**30:.0f} GiB); ask for fewer or a smaller --scale"
        )


def decode_uint8(model: JointVAE, codes: Tensor) -> np.ndarray:
    """Codes decoded a chunk at a time into uint8 RGB images (N, H, W, 3)."""
    parts = [to_uint8(model.decode(chunk)) for chunk in codes.split(DECODE_CHUNK)]
    return np.concatenate(parts) if parts else np.zeros((0, model.image_size, model.image_size, 3), np.uint8)


@torch.no_grad()
def sample_grid(
    model: JointVAE,
    n: int,
    generator: torch.Generator,
    device: torch.device,
    fixed: list[tuple[Unit, int]] | None = None,
    scale: int = 1,
) -> np.ndarray:
    """`n` prior samples in a square-ish grid, optionally with discrete variables fixed to categories."""
    check_picture_size(model, n, scale, f"a grid of {n} samples")
    images = decode_uint8(model, _conditioned_prior(model, n, generator, device, fixed))
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    padded = np.zeros((rows * columns, *images.shape[1:]), np.uint8)
    padded[:n] = images
    return grid(padded.reshape(rows, columns, *images.shape[1:]), scale=scale)


@torch.no_grad()
def per_category_grid(
    model: JointVAE,
    unit: Unit,
    columns: int,
    generator: torch.Generator,
    device: torch.device,
    fixed: list[tuple[Unit, int]] | None = None,
    scale: int = 1,
) -> np.ndarray:
    """One row per category of `unit` (the paper's figure 4a); column j shares its continuous code."""
    categories = model.discrete[unit.index]
    check_picture_size(model, columns * categories, scale, f"{categories} rows of {columns} samples")
    codes = _conditioned_prior(model, columns, generator, device, fixed)
    rows = np.stack([decode_uint8(model, set_unit(codes, model, unit, k)) for k in range(categories)])
    labels = [f"{unit.label}={k}" for k in range(categories)]
    return grid(rows, labels, scale=scale)


@torch.no_grad()
def write_ranked_traversal(
    model: JointVAE,
    source: ImageSource,
    device: torch.device,
    kl: UnitKL,
    path: Path,
    seed: int,
    names: dict[str, str] | None = None,
    with_prior_mode: bool = True,
    max_continuous: int | None = None,
    frames: int = 10,
    encoded: int = 4,
    duration_ms: int = 100,
) -> Path:
    """A GIF of units ranked by KL (at most `max_continuous` continuous ones, then every discrete variable),
    over `encoded` images drawn by `seed`, after the prior mode when `with_prior_mode`."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(source), (encoded,), generator=generator)
    bases = encode_from(model, source, picks, device).mode()
    if with_prior_mode and not (model.classes and model.default_class is None):
        bases = torch.cat([prior_mode(model, 1, device), bases])
    ranked = ranked_units(model, kl)
    keep = model.continuous if max_continuous is None else min(max_continuous, model.continuous)
    units = ranked[:keep] + ranked[model.continuous :]
    labels = [unit_label(unit, names or {}, kl) for unit in units]
    scale = 2 if model.image_size <= 32 else 1
    write_gif(
        traversal_frames(model, bases, units, frames, labels, scale=scale), path, duration_ms=duration_ms
    )
    return path
