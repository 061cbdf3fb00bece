"""Checkpoints: one self-describing `.pt` file that rebuilds its model and preprocessing with no preset passed again.

Files are written atomically (a temporary file in the same folder, then a rename), so an interrupted write
never leaves a half checkpoint where a good one was. They are read only with `torch.load(weights_only=True)`,
which refuses to run code hidden in a pickle; a file that is not jvae's is rejected before anything in it is
used.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from jvae_cli import __version__
from jvae_cli.errors import CheckpointError, PresetError
from jvae_cli.files import write_via
from jvae_cli.model import JointVAE
from jvae_cli.presets import Preset, validate_preset

FORMAT = "jvae-checkpoint"
FORMAT_VERSION = 2
# Format 1 checkpoints of the 32x32 convolutional network hold the old mirrored decoder (64->64, 64->32,
# 32->C) that format 2 replaced with the paper's (64->32, 32->32, 32->C); their weights fit no model jvae builds.
OFFICIAL_DECODER_SINCE = 2
REQUIRED_KEYS = ("format_version", "preset", "model", "step")


def build_model(preset: Preset) -> JointVAE:
    return JointVAE(
        image_size=preset.data.image_size,
        channels=preset.data.channels,
        continuous=preset.model.continuous,
        discrete=preset.model.discrete,
        hidden=preset.model.hidden,
        mlp=preset.model.architecture == "mlp",
        classes=preset.model.classes,
        generic=preset.model.generic,
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_torch_save(payload: dict[str, Any], path: Path) -> None:
    write_via(Path(path), lambda temporary: torch.save(payload, temporary))


def new_payload(preset_name: str, preset: Preset) -> dict[str, Any]:
    """The keys every jvae checkpoint has; the trainer fills in weights and state."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jvae_version": __version__,
        "torch_version": str(torch.__version__),
        "preset_name": preset_name,
        "preset": preset.model_dump(mode="json"),
        "unit_names": {},
        "unit_kl": None,
    }


def _refusal_reason(message: str) -> str:
    """The line of torch's long weights-only refusal that names what was refused."""
    for line in message.splitlines():
        if "Unsupported" in line or "GLOBAL" in line:
            return line.strip().removeprefix("WeightsUnpickler error: ").split(". Please")[0][:160]
    return "unsupported content"


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's contents, after checking that it is a jvae checkpoint this version can read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):  # every torch.save since PyTorch 1.6 writes a zip archive
        raise CheckpointError(f"{path}: damaged or not a PyTorch checkpoint (not a torch.save archive)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused: not a jvae checkpoint (it holds Python objects that a safe load will not run: "
            f"{_refusal_reason(str(exc))})"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError, AttributeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: damaged or not a PyTorch checkpoint ({detail[:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a jvae checkpoint (a PyTorch file without jvae's 'format' marker)"
        )
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: incomplete jvae checkpoint (missing {', '.join(missing)})")
    if not isinstance(payload["format_version"], int):
        raise CheckpointError(
            f"{path}: not a jvae checkpoint (format_version is {payload['format_version']!r})"
        )
    if payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer jvae (format {payload['format_version']}, this jvae reads "
            f"{FORMAT_VERSION}); upgrade jvae"
        )
    _refuse_old_decoder(path, payload)
    return payload


def _refuse_old_decoder(path: Path, payload: dict[str, Any]) -> None:
    preset = payload["preset"]
    model = preset.get("model") if isinstance(preset, dict) else None
    architecture = model.get("architecture") if isinstance(model, dict) else None
    if payload["format_version"] < OFFICIAL_DECODER_SINCE and architecture == "conv32":
        raise CheckpointError(
            f"{path}: written by an older jvae whose 32x32 decoder was 64->64, 64->32, 32->C; jvae now "
            "builds the paper's (64->32, 32->32, 32->C) and these weights do not fit it: retrain with "
            f"jvae train --preset {payload.get('preset_name', 'NAME')}"
        )


@dataclass
class LoadedCheckpoint:
    path: Path
    payload: dict[str, Any]
    preset: Preset
    model: JointVAE

    @property
    def preset_name(self) -> str:
        return str(self.payload.get("preset_name", self.path.stem))


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> LoadedCheckpoint:
    """The model in eval mode on `device`, with the preset it was trained with."""
    payload = read_checkpoint(path)
    try:
        preset = validate_preset(payload["preset"], f"{path} preset")
    except PresetError as exc:
        raise CheckpointError(f"{path}: its preset does not validate: {exc}") from None
    model = build_model(preset)
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        detail = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit its preset's model ({detail[:160]})") from None
    model.to(device).eval()
    return LoadedCheckpoint(Path(path), payload, preset, model)


NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_-]*"
RESERVED_NAMES = {"unit", "ckpt", "out", "sweep", "device", "frames", "duration", "help"}


def set_unit_names(path: Path, names: dict[str, str | None]) -> dict[str, str]:
    """Store (or, with None, remove) unit names; every other entry of the file stays as it was."""
    import re

    payload = read_checkpoint(path)
    current = dict(payload.get("unit_names") or {})
    for address, name in names.items():
        if name is None:
            current.pop(address, None)
            continue
        if (
            not re.fullmatch(NAME_PATTERN, name)
            or name in RESERVED_NAMES
            or re.fullmatch(r"z?\d+|d\d+", name)
        ):
            raise CheckpointError(
                f"cannot name a unit {name!r}: use letters, digits, _ or -, starting with a letter, and not "
                f"a unit address or one of {', '.join(sorted(RESERVED_NAMES))}"
            )
        taken = [a for a, n in current.items() if n == name and a != address]
        if taken:
            raise CheckpointError(
                f"the name {name!r} is already unit {taken[0]}'s; remove it first with {taken[0]}="
            )
        current[address] = name
    payload["unit_names"] = current
    atomic_torch_save(payload, Path(path))
    return current
