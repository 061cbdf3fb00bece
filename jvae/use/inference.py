"""What a trained model is used for: encoding many images, editing one, traversing and sampling latents.

Each function takes a loaded checkpoint and plain values, reports progress through a callback, and returns
tensors or writes files; layout into pictures is in `figures`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from jvae.base.images import load_batches, load_image
from jvae.base.media import to_uint8, write_png
from jvae.data.sources import ImageSource
from jvae.modeling.checkpoint import LoadedCheckpoint
from jvae.modeling.codes import CodeWriter
from jvae.modeling.latents import Change, apply_changes, encode_from
from jvae.modeling.model import Posterior

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class EncodeResult:
    rows: int
    unreadable: list[tuple[Path, str]]
    reconstructions: int


def _reconstruct(loaded: LoadedCheckpoint, posterior: Posterior, names: list[str], folder: Path) -> None:
    images = to_uint8(loaded.model.decode(posterior.mode()))
    for name, image in zip(names, images):
        write_png(image, folder / name)


@torch.no_grad()
def encode_files(
    loaded: LoadedCheckpoint,
    paths: list[Path],
    writer: CodeWriter,
    device: torch.device,
    batch_size: int = 256,
    reconstruct_dir: Path | None = None,
    skip_unreadable: bool = False,
    progress: Progress | None = None,
) -> EncodeResult:
    """Codes of image files, one batch in memory at a time; reconstructions named <row>_<stem>.png."""
    data = loaded.preset.data
    unreadable: list[tuple[Path, str]] = []
    done = 0
    for good, images, bad in load_batches(paths, data.channels, data.image_size, batch_size, skip_unreadable):
        unreadable += bad
        if good:
            posterior = loaded.model.encode(images.to(device))
            writer.write([str(p) for p in good], posterior)
            if reconstruct_dir is not None:
                first = writer.rows - len(good)
                names = [f"{first + i:06d}_{p.stem}.png" for i, p in enumerate(good)]
                _reconstruct(loaded, posterior, names, reconstruct_dir)
        done += len(good) + len(bad)
        if progress:
            progress(done, len(paths))
    return EncodeResult(writer.rows, unreadable, writer.rows if reconstruct_dir else 0)


@torch.no_grad()
def encode_dataset(
    loaded: LoadedCheckpoint,
    source: ImageSource,
    label: str,
    writer: CodeWriter,
    device: torch.device,
    limit: int | None = None,
    batch_size: int = 256,
    reconstruct_dir: Path | None = None,
    progress: Progress | None = None,
) -> EncodeResult:
    """Codes of the first `limit` images of a dataset; rows are named `<dataset>:<index>`."""
    total = min(limit or len(source), len(source))
    for start in range(0, total, batch_size):
        indices = torch.arange(start, min(start + batch_size, total))
        posterior = encode_from(loaded.model, source, indices, device)
        writer.write([f"{label}:{i}" for i in indices.tolist()], posterior)
        if reconstruct_dir is not None:
            _reconstruct(
                loaded, posterior, [f"{i:06d}_{label}.png" for i in indices.tolist()], reconstruct_dir
            )
        if progress:
            progress(int(indices[-1]) + 1, total)
    return EncodeResult(writer.rows, [], writer.rows if reconstruct_dir else 0)


@dataclass
class EditResult:
    original: Tensor  # (1, latent) the image's code
    edited: Tensor  # (1, latent)
    image: np.ndarray  # (H, W, 3) uint8 decoded edited code
    sweep: list[np.ndarray]  # frames from the original code to the edited one, when asked for


@torch.no_grad()
def edit_image(
    loaded: LoadedCheckpoint, path: Path, changes: list[Change], device: torch.device, sweep_frames: int = 0
) -> EditResult:
    """Encode an image to its deterministic code, apply the changes, decode."""
    model, data = loaded.model, loaded.preset.data
    image = load_image(path, data.channels, data.image_size).unsqueeze(0).to(device)
    original = model.encode(image).mode()
    edited = apply_changes(original, model, changes)
    decoded = to_uint8(model.decode(edited))[0]
    sweep = []
    if sweep_frames > 1:
        codes = torch.cat(
            [apply_changes(original, model, changes, f) for f in np.linspace(0, 1, sweep_frames)]
        )
        sweep = list(to_uint8(model.decode(codes)))
    return EditResult(original.cpu(), edited.cpu(), decoded, sweep)
