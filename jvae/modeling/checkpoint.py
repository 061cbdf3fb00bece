"""Checkpoints: one self-describing `.pt` file that rebuilds its model and preprocessing with no preset passed again.

Files are written atomically (a temporary file in the same folder, then a rename), so an interrupted write
never leaves a half checkpoint where a good one was. They are read only with `torch.load(weights_only=True)`,
which refuses to run code hidden in a pickle; a file that is not jvae's is rejected before anything in it is
used.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError
from torch import Tensor

from jvae.base.errors import CheckpointError, PresetError, UsageError
from jvae.base.files import write_via
from jvae.base.version import __version__
from jvae.modeling.builder import build_model
from jvae.modeling.model import JointVAE
from jvae.modeling.presets import Preset, validate_preset

FORMAT = "jvae-checkpoint"
FORMAT_VERSION = 2
# Format 1 checkpoints of the 32x32 convolutional network hold the old mirrored decoder (64->64, 64->32,
# 32->C) that format 2 replaced with the paper's (64->32, 32->32, 32->C); their weights fit no model jvae builds.
OFFICIAL_DECODER_SINCE = 2
REQUIRED_KEYS = ("format_version", "preset", "model", "step")


@dataclass
class RunState:
    """What continuing a run needs beyond the weights; imported models have none."""

    optimizer: dict[str, Any]
    rng: dict[
        str, Any
    ]  # torch: the global generator's state; noise: the sampling generator's; device: its type
    total_steps: int
    critic: dict[str, Any] | None = None  # the kind's second network and its optimiser
    interval: dict[str, Any] | None = None  # {"count", "sums"} of the log interval the checkpoint fell in
    threads: int | None = None  # the CPU threads it trained with: the same count resumes it bit for bit


@dataclass
class Checkpoint:
    """The one description of jvae's checkpoint format: every field it reads and writes, typed.

    `preset` stays the JSON of the preset (a newer jvae's fields are then reported, not silently dropped);
    `load_checkpoint` validates it.
    """

    preset_name: str
    preset: dict[str, Any]
    model: dict[str, Tensor]
    step: int
    unit_names: dict[str, str] = field(default_factory=dict)  # unit address ("3", "d0") -> name
    unit_kl: dict[str, list[float]] | None = None  # {"continuous": [...], "discrete": [...]} in nats
    state: RunState | None = None
    imported: dict[str, Any] | None = None  # where an imported model came from
    format_version: int = FORMAT_VERSION
    jvae_version: str = __version__
    torch_version: str = str(torch.__version__)

    @classmethod
    def new(cls, preset_name: str, preset: Preset, model: dict[str, Tensor], step: int = 0) -> Checkpoint:
        return cls(preset_name, preset.model_dump(mode="json"), model, step)

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "format": FORMAT,
            "format_version": self.format_version,
            "jvae_version": self.jvae_version,
            "torch_version": self.torch_version,
            "preset_name": self.preset_name,
            "preset": self.preset,
            "unit_names": dict(self.unit_names),
            "unit_kl": self.unit_kl,
            "model": self.model,
            "step": self.step,
        }
        if self.state is not None:
            payload.update(
                optimizer=self.state.optimizer, rng=self.state.rng, total_steps=self.state.total_steps
            )
            if self.state.critic is not None:
                payload["critic"] = self.state.critic
            if self.state.interval is not None:
                payload["interval"] = self.state.interval
            if self.state.threads is not None:
                payload["threads"] = self.state.threads
        if self.imported is not None:
            payload["imported"] = self.imported
        return payload

    def save(self, path: Path) -> None:
        """Write atomically: an interrupted write leaves the previous file as it was."""
        payload = self.to_payload()
        write_via(Path(path), lambda temporary: torch.save(payload, temporary))


class _UnitKL(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    continuous: list[StrictInt | StrictFloat]
    discrete: list[StrictInt | StrictFloat]


class _Fields(BaseModel):
    """The type of every field jvae writes, so a damaged or forged file is refused when read rather than
    failing later inside a command. Only validated: the checkpoint keeps the loaded objects themselves."""

    model_config = ConfigDict(strict=True, arbitrary_types_allowed=True, extra="ignore")

    step: int = Field(ge=0)
    preset: dict[Any, Any]
    model: dict[str, Tensor]
    unit_names: dict[str, str]
    unit_kl: _UnitKL | None
    imported: dict[Any, Any] | None


class _Rng(BaseModel):
    model_config = ConfigDict(strict=True, arbitrary_types_allowed=True, extra="ignore")

    torch: Tensor  # the global generator's state; other entries (noise, device) are read where used


class _Interval(BaseModel):
    model_config = ConfigDict(strict=True, arbitrary_types_allowed=True, extra="ignore")

    count: StrictInt | StrictBool
    sums: dict[Any, Tensor]


THREADS_MOST = 4096  # a thread count beyond any machine's is a damaged or crafted file


class _StateFields(BaseModel):
    """The fields of a checkpoint that can continue its run (one with an optimiser state)."""

    model_config = ConfigDict(strict=True, arbitrary_types_allowed=True, extra="ignore")

    optimizer: dict[Any, Any]
    rng: _Rng
    total_steps: int
    critic: dict[Any, Any] | None
    interval: _Interval | None
    threads: Annotated[int, Field(ge=1, le=THREADS_MOST)] | None


_EXPECTED = {
    "step": "a non-negative integer",
    "preset": "a table",
    "model": "a table of tensors",
    "unit_names": "a table of names",
    "unit_kl": "lists of numbers for continuous and discrete units",
    "imported": "a table",
    "optimizer": "a table",
    "rng": "a table of generator states",
    "total_steps": "an integer",
    "critic": "a table",
    "interval": "a step count and a table of tensors",
    "threads": f"a whole number of threads, 1 to {THREADS_MOST}",
}


def _validated(path: Path, fields: type[BaseModel], values: dict[str, Any]) -> None:
    """`values` checked against `fields`; the first field in error named in one line."""
    try:
        fields.model_validate(values)
    except ValidationError as exc:
        key = str(exc.errors()[0]["loc"][0])
        raise CheckpointError(f"{path}: damaged jvae checkpoint ({key} is not {_EXPECTED[key]})") from None


def _typed(path: Path, payload: dict[str, Any]) -> Checkpoint:
    """The payload as a Checkpoint, each field checked for the type jvae writes."""
    names = payload.get("unit_names") or {}  # a file without names may hold any empty value
    shown = {key: payload.get(key) for key in _EXPECTED}
    _validated(path, _Fields, {**shown, "unit_names": names})
    state = None
    if "optimizer" in payload:
        _validated(path, _StateFields, shown)
        state = RunState(
            payload["optimizer"],
            payload["rng"],
            payload["total_steps"],
            payload.get("critic"),
            payload.get("interval"),
            payload.get("threads"),
        )
    return Checkpoint(
        preset_name=str(payload.get("preset_name", path.stem)),
        preset=payload["preset"],
        model=payload["model"],
        step=payload["step"],
        unit_names=dict(names),
        unit_kl=payload.get("unit_kl"),
        state=state,
        imported=payload.get("imported"),
        format_version=payload["format_version"],
        jvae_version=str(payload.get("jvae_version", "")),
        torch_version=str(payload.get("torch_version", "")),
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _refusal_reason(message: str) -> str:
    """The line of torch's long weights-only refusal that names what was refused."""
    for line in message.splitlines():
        if "Unsupported" in line or "GLOBAL" in line:
            return line.strip().removeprefix("WeightsUnpickler error: ").split(". Please")[0][:160]
    return "unsupported content"


def load_weights_only(path: Path) -> Any:
    """`torch.load(weights_only=True)` on the CPU with PyTorch's own warnings held back: when the file is
    refused jvae says why in one line, and a note about pickle protocols before it only confuses."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(path: Path) -> Checkpoint:
    """The checkpoint's contents, after checking that it is a jvae checkpoint this version can read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):  # every torch.save since PyTorch 1.6 writes a zip archive
        raise CheckpointError(f"{path}: damaged or not a PyTorch checkpoint (not a torch.save archive)")
    try:
        payload = load_weights_only(path)
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
    return _typed(path, payload)


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
    checkpoint: Checkpoint
    preset: Preset
    model: JointVAE

    @property
    def preset_name(self) -> str:
        return self.checkpoint.preset_name

    @property
    def unit_names(self) -> dict[str, str]:
        return self.checkpoint.unit_names

    @property
    def unit_kl(self) -> dict[str, list[float]] | None:
        return self.checkpoint.unit_kl


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> LoadedCheckpoint:
    """The model in eval mode on `device`, with the preset it was trained with."""
    checkpoint = read_checkpoint(path)
    try:
        preset = validate_preset(checkpoint.preset, f"{path} preset")
    except PresetError as exc:
        raise CheckpointError(f"{path}: its preset does not validate: {exc}") from None
    model = build_model(preset)
    try:
        model.load_state_dict(checkpoint.model)
    except (RuntimeError, TypeError, AttributeError) as exc:
        detail = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit its preset's model ({detail[:160]})") from None
    model.to(device).eval()
    _check_unit_kl(path, checkpoint, model)
    return LoadedCheckpoint(Path(path), checkpoint, preset, model)


def _check_unit_kl(path: Path, checkpoint: Checkpoint, model: JointVAE) -> None:
    kl = checkpoint.unit_kl
    if kl is not None and (
        len(kl["continuous"]) != model.continuous or len(kl["discrete"]) != len(model.discrete)
    ):
        raise CheckpointError(
            f"{path}: damaged jvae checkpoint (unit_kl has {len(kl['continuous'])} + {len(kl['discrete'])} "
            f"entries for a model of {model.continuous} continuous units and {len(model.discrete)} discrete)"
        )


NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_-]*"
RESERVED_NAMES = {"unit", "ckpt", "out", "sweep", "device", "frames", "duration", "help"}


def set_unit_names(path: Path, names: Mapping[str, str | None]) -> dict[str, str]:
    """Store (or, with None, remove) unit names; every other entry of the file stays as it was."""
    import re

    checkpoint = read_checkpoint(path)
    current = dict(checkpoint.unit_names)
    for address, name in names.items():
        if name is None:
            current.pop(address, None)
            continue
        if (
            not re.fullmatch(NAME_PATTERN, name)
            or name in RESERVED_NAMES
            or re.fullmatch(r"z?\d+|d\d+", name)
        ):
            raise UsageError(
                f"cannot name a unit {name!r}: use letters, digits, _ or -, starting with a letter, and not "
                f"a unit address or one of {', '.join(sorted(RESERVED_NAMES))}"
            )
        taken = [a for a, n in current.items() if n == name and a != address]
        if taken:
            raise UsageError(
                f"the name {name!r} is already unit {taken[0]}'s; remove it first with {taken[0]}="
            )
        current[address] = name
    checkpoint.unit_names = current
    checkpoint.save(Path(path))
    return current
