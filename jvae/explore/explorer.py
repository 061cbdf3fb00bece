"""What the explorer page asks of a model: its units, the image of a code, the code of an image.

Every answer is built from the functions `jvae traverse`, `jvae sample` and `jvae encode` use (prior_mode,
set_unit, prior_sample, load_image and the model's encoder), so the page shows exactly what those commands
write. Requests arrive as text (query parameters, uploaded bytes) and are checked here; a request that does
not fit the model is an ExploreError carrying the HTTP status to answer with, never an exception from torch.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from jvae.base.errors import JvaeError
from jvae.base.images import ImageReadError, image_from_bytes, load_image
from jvae.base.limits import SEED_MAX, VALUE_LIMIT
from jvae.base.media import to_uint8
from jvae.modeling.checkpoint import LoadedCheckpoint
from jvae.modeling.latents import (
    DEFAULT_RANGE,
    Unit,
    UnitError,
    UnitKL,
    all_units,
    parse_unit,
    prior_mode,
    prior_sample,
    ranked_units,
    set_unit,
    unit_address,
)

MAX_UPLOAD_BYTES = 16 * 2**20  # a large phone photograph; the model reads at most 128x128 pixels of it
MAX_UPLOAD_PIXELS = 16_000_000  # decoding takes about 12 bytes a pixel, while the model sees 128x128 at most
DECODES_AT_ONCE = 2  # uploads decoded at the same time; the others wait (memory: a few hundred MB at most)
CLASS_KEY = "class"  # the query parameter naming a class-conditional model's label


class ExploreError(JvaeError):
    """A request the explorer refuses, with the HTTP status that says why (400 bad input, 404 no such thing,
    413 too large)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Explorer:
    """One loaded model answering the page's requests; a lock serialises them, because a class-conditional
    model's label is state on the model that each request sets (as the commands' --class does)."""

    def __init__(
        self, loaded: LoadedCheckpoint, device: torch.device, images: list[Path], label: int | None = None
    ) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.device = device
        self.images = list(images)  # the only files on this machine the explorer ever reads
        self.label = (0 if label is None else label) if self.model.classes else None
        stored = loaded.unit_kl
        self.kl = UnitKL(stored["continuous"], stored["discrete"]) if stored else None
        self.units = ranked_units(self.model, self.kl) if self.kl else all_units(self.model)
        self._lock = threading.Lock()
        self._decoding = threading.BoundedSemaphore(DECODES_AT_ONCE)

    # ------------------------------------------------------------------------------------------- describe

    def describe(self) -> dict[str, Any]:
        """What the page needs to draw its controls: units in KL order with names, ranges and categories."""
        names = self.loaded.unit_names
        return {
            "checkpoint": self.loaded.path.name,
            "preset": self.loaded.preset_name,
            "kind": self.loaded.preset.loss.kind,
            "image_size": self.model.image_size,
            "channels": self.model.channels,
            "range": list(DEFAULT_RANGE),
            "value_limit": VALUE_LIMIT,
            "max_upload_bytes": MAX_UPLOAD_BYTES,
            "classes": self.model.classes,
            "class": self.label,
            "units": [
                {
                    "address": unit_address(unit),
                    "label": unit.label,
                    "kind": unit.kind,
                    "name": names.get(unit_address(unit)),
                    "kl": self.kl.of(unit) if self.kl else None,
                    "categories": self.model.discrete[unit.index] if unit.kind == "discrete" else None,
                }
                for unit in self.units
            ],
            "images": [{"index": i, "name": path.name} for i, path in enumerate(self.images)],
        }

    # ------------------------------------------------------------------------------------------- decode

    def decode_png(self, query: Iterable[tuple[str, str]]) -> bytes:
        """The PNG of the prior mode with the units in `query` set (unit address or name -> value)."""
        pairs = list(query)
        label = self._label(dict(pairs).get(CLASS_KEY))
        values: dict[Unit, float] = {}
        for key, text in pairs:
            if key == CLASS_KEY:
                continue
            unit = self._unit(key)
            if unit in values:
                raise ExploreError(f"unit {key!r} is given twice")
            values[unit] = self._value(unit, key, text)
        with self._lock, torch.no_grad():
            self._condition(label)
            codes = prior_mode(self.model, 1, self.device)
            for unit, value in values.items():
                codes = set_unit(codes, self.model, unit, value)
            picture = to_uint8(self.model.decode(codes))[0]
        return png(picture)

    def _unit(self, key: str) -> Unit:
        try:
            return parse_unit(key, self.model, self.loaded.unit_names)
        except UnitError as exc:
            raise ExploreError(str(exc)) from None

    def _value(self, unit: Unit, key: str, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ExploreError(f"unit {key}: {text!r} is not a number") from None
        if unit.kind == "discrete":
            categories = self.model.discrete[unit.index]
            if not (value.is_integer() and 0 <= value < categories):
                raise ExploreError(f"unit {key} takes a category 0..{categories - 1}, not {text!r}")
        elif not (math.isfinite(value) and abs(value) <= VALUE_LIMIT):
            raise ExploreError(f"unit {key}: {text!r} is outside -{VALUE_LIMIT}..{VALUE_LIMIT}")
        return value

    def _label(self, text: str | None) -> int | None:
        """The label a request conditions on: its `class`, else the one the explorer started with."""
        if not self.model.classes:
            if text is not None:
                raise ExploreError("class is for class-conditional models; this model is not one")
            return None
        if text is None:
            return self.label
        label = whole_number(text, self.model.classes - 1)
        if label is None:
            raise ExploreError(f"class {text!r}: this model knows classes 0..{self.model.classes - 1}")
        return label

    def _condition(self, label: int | None) -> None:
        if self.model.classes:
            self.model.default_class = label

    # ------------------------------------------------------------------------------------------- codes

    def code_of_upload(self, data: bytes, label_text: str | None) -> dict[str, Any]:
        """The code `jvae encode` gives an uploaded image: means and each variable's most likely category."""
        label = self._label(label_text)
        data_config = self.loaded.preset.data
        try:
            with self._decoding:
                image = image_from_bytes(
                    data,
                    "the upload",
                    data_config.channels,
                    data_config.image_size,
                    MAX_UPLOAD_BYTES,
                    MAX_UPLOAD_PIXELS,
                )
        except ImageReadError as exc:
            raise ExploreError(str(exc), 413 if len(data) > MAX_UPLOAD_BYTES else 400) from None
        return self._encode(image, label)

    def code_of_file(self, index: int, label_text: str | None) -> dict[str, Any]:
        """The code of the `index`-th --image file."""
        label = self._label(label_text)
        return self._encode(self._input(index), label)

    def input_png(self, index: int) -> bytes:
        """The `index`-th --image file as the model sees it (converted, cropped, resized)."""
        return png(to_uint8(self._input(index)))

    def _input(self, index: int) -> Tensor:
        if not 0 <= index < len(self.images):
            raise ExploreError(f"no image {index}: the explorer was given {len(self.images)}", 404)
        data_config = self.loaded.preset.data
        try:
            return load_image(self.images[index], data_config.channels, data_config.image_size)
        except ImageReadError as exc:
            raise ExploreError(str(exc)) from None

    def _encode(self, image: Tensor, label: int | None) -> dict[str, Any]:
        with self._lock, torch.no_grad():
            self._condition(label)
            posterior = self.model.encode(image.unsqueeze(0).to(self.device))
        return self._code(posterior.mode(), label)

    def prior_code(self, seed_text: str | None, label_text: str | None) -> dict[str, Any]:
        """A code drawn from the prior as `jvae sample --seed` draws its first one."""
        label = self._label(label_text)
        seed = whole_number("0" if seed_text is None else seed_text, SEED_MAX)
        if seed is None:
            raise ExploreError(f"seed {seed_text!r}: give a whole number 0..{SEED_MAX}")
        with self._lock:
            self._condition(label)
            codes = prior_sample(self.model, 1, torch.Generator().manual_seed(seed), self.device)
        return self._code(codes, label)

    def _code(self, codes: Tensor, label: int | None) -> dict[str, Any]:
        """A code (1, latent) as {unit address: value}, discrete variables as their category."""
        row = codes[0].cpu()
        out: dict[str, float | int] = {}
        for unit in all_units(self.model):
            if unit.kind == "continuous":
                out[unit_address(unit)] = float(row[unit.index])
            else:
                offset = self.model.continuous + sum(self.model.discrete[: unit.index])
                block = row[offset : offset + self.model.discrete[unit.index]]
                out[unit_address(unit)] = int(block.argmax())
        return {"code": out, "class": label}


def whole_number(text: str, most: int) -> int | None:
    """`text` as a whole number 0..most, else None. Only ASCII digits, and no more of them than `most` has:
    int() takes other scripts' digits too, and refuses (or takes long over) thousands of digits."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(most)):
        return None
    value = int(text)
    return value if value <= most else None


def png(picture: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()
