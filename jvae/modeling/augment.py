"""Random affine jitter of a batch: the moved copy of each image that a consistency term compares the
discrete code with.

Drawn from the run's noise generator, so a resumed run draws what an uninterrupted one would; under DDP the
parameters of the whole global batch are drawn and each process takes its own rows, as the sampling noise is.
Pixels moved in from outside the image are 0, the background of the greyscale datasets the option is for.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from jvae.base.sections import Jitter


def jittered(
    x: Tensor, jitter: Jitter, generator: torch.Generator | None = None, shard: tuple[int, int] | None = None
) -> Tensor:
    """`x` (B, C, H, W), each image rotated, shifted and zoomed by its own uniformly drawn amounts."""
    rank, world = shard or (0, 1)
    rows = x.shape[0]
    draws = torch.rand((rows * world, 4), generator=generator, device=x.device)[
        rank * rows : (rank + 1) * rows
    ]
    spread = 2 * draws - 1  # uniform in [-1, 1]
    angle = spread[:, 0] * math.radians(jitter.rotation)
    zoom = 1 + spread[:, 1] * jitter.scale
    shift = spread[:, 2:] * (2 * jitter.translation)  # affine_grid's coordinates span 2 per side
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], dim=1), torch.stack([sin, cos, shift[:, 1]], dim=1)], dim=1
    )
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        moved = moved.contiguous(memory_format=torch.channels_last)
    return moved
