"""Presets: the typed, validated home of every default jvae uses.

A preset is a TOML file whose stem is its name. Nothing else in jvae holds a default for
a dataset, model, loss or training setting; the CLI only passes a preset, overrides and a run directory. The
schema forbids unknown keys so that a typo fails loudly with its field path instead of being ignored.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, model_validator

from jvae.base.errors import PresetError
from jvae.base.limits import (
    BATCH_MAX,
    EPOCHS_MAX,
    SEED_MAX,
    STEPS_MAX,
)
from jvae.base.runfiles import NESTING_MAX, RunFileError, nesting_depth, read_toml
from jvae.base.sections import CapacitySchedule, DataSection, LossBase, ModelConfig, Section
from jvae.data.registry import DATASETS
from jvae.kinds import DEFAULT_KIND, KINDS, LossConfig, kind_of
from jvae.trackers import TRACKERS

SUMMARY_MAX = 40  # what fits beside the longest name and model at 80 columns, with room to spare

__all__ = [
    "CapacitySchedule",
    "LossBase",
    "LossConfig",
    "ModelConfig",
    "Preset",
    "load_preset",
    "loss_config",
]

# ----------------------------------------------------------------------------------------------- schema

if TYPE_CHECKING:  # the names are known only at runtime; pydantic checks them against the registries
    DatasetName = str
    TrackerName = str
else:
    DatasetName = Literal[tuple(DATASETS)]
    TrackerName = Literal[tuple(TRACKERS)]
ARCHITECTURE_SIZES = {"conv32": 32, "conv64": 64, "conv128": 128}  # the mlp architecture takes either size


class DataConfig(DataSection):  # the data section, its dataset checked against the registry
    dataset: DatasetName = Field(title="Dataset registry name")

    @model_validator(mode="after")
    def _split_where_the_dataset_has_one(self) -> DataConfig:
        if self.split != "all" and not DATASETS[self.dataset].splits:
            with_splits = ", ".join(name for name, entry in DATASETS.items() if entry.splits)
            raise ValueError(f"{self.dataset!r} has no {self.split} split; data.split is for {with_splits}")
        return self

    @model_validator(mode="after")
    def _generated_only_for_dsprites(self) -> DataConfig:
        if self.source == "generated" and not DATASETS[self.dataset].generated:
            generated = ", ".join(name for name, entry in DATASETS.items() if entry.generated)
            raise ValueError(f"source 'generated' exists only for {generated}, not {self.dataset!r}")
        return self


class TrainConfig(Section):
    batch_size: int = Field(64, ge=1, le=BATCH_MAX, title="Images per step")
    lr: float = Field(gt=0, title="Adam learning rate (with a schedule: its peak)")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant",
        title="After warm-up, hold lr (constant) or fall from lr to lr_min along a half cosine ending at the "
        "last step (cosine)",
    )
    lr_warmup_steps: int = Field(
        0, ge=0, le=STEPS_MAX, title="Steps of linear warm-up from 0 to lr (0: none)"
    )
    lr_min: float = Field(0.0, ge=0, title="cosine: the learning rate at the last step")
    epochs: int | None = Field(
        None, ge=1, le=EPOCHS_MAX, title="Passes over the dataset (steps wins when both are set)"
    )
    steps: int | None = Field(None, ge=1, le=STEPS_MAX, title="Optimiser steps; one step is one batch")
    seed: int = Field(0, ge=0, le=SEED_MAX, title="Seed of initialisation, data order and sampling noise")
    log_every: int = Field(100, ge=1, le=STEPS_MAX, title="Steps between lines of metrics.jsonl")
    checkpoint_every: int = Field(5000, ge=1, le=STEPS_MAX, title="Steps between checkpoints")
    keep_checkpoints: int = Field(
        0,
        ge=0,
        le=1000,
        title="Also keep the last N periodic checkpoints as ckpt-STEP.pt beside ckpt.pt (0: none)",
    )
    eval_every: int | None = Field(
        None,
        ge=1,
        le=STEPS_MAX,
        title="Steps between evaluations during training: held-out ELBO terms (metrics.jsonl lines with "
        'split "eval"), a traversal snapshot in snapshots/, and MIG with eval_mig (unset: none)',
    )
    eval_images: int = Field(512, ge=16, le=65536, title="Images of the fixed evaluation sample")
    collapse_step: int | None = Field(
        None,
        ge=1,
        le=STEPS_MAX,
        title="Step of the discrete-code collapse check (unset: the end of the discrete capacity ramp, for "
        "kinds that have one and runs that reach it; models without discrete variables are never checked)",
    )
    collapse_check: bool = Field(
        True, title="Check each discrete variable for a collapsed code at collapse_step (false: never)"
    )
    collapse_information: float = Field(
        0.25,
        ge=0,
        le=1,
        title="A discrete variable has collapsed when the information it carries, I(x; c) on held-out "
        "images, is below this fraction of its share of the discrete capacity at the check",
    )
    collapse_perplexity: float = Field(
        1.5,
        ge=1,
        title="... or when it uses fewer categories than this (the perplexity exp H(q_bar(c)) of category "
        "use: 1 for a constant code, K for a balanced one)",
    )
    on_collapse: Literal["warn", "restart"] = Field(
        "warn",
        title="warn: say so in one line and record it in collapse.json; restart: train the run again from "
        "the next seed (train.seed + 1), at most collapse_restarts times, keeping the record",
    )
    collapse_restarts: int = Field(3, ge=0, le=100, title="How many times on_collapse = restart may restart")

    eval_mig: bool = Field(
        False, title="Also compute MIG at each evaluation (datasets with ground-truth factors)"
    )
    track: list[TrackerName] = Field(
        default_factory=list,
        title="Trackers to send the run to: tensorboard, mlflow (each an optional extra, e.g. "
        'pip install "jvae[tensorboard]")',
    )
    adam: Literal["current", "pytorch-0.4"] = Field(
        "current",
        title="Adam's update. current: today's PyTorch, epsilon added after the bias correction; "
        "pytorch-0.4: PyTorch 0.4.1's, epsilon added before it (31.6 times larger at step 1, as the "
        "released JointVAE models were trained)",
    )
    last_batch: Literal["drop", "keep"] = Field(
        "drop",
        title="drop: epochs of whole batches (the remainder left out, another one each epoch); keep: a "
        "last, smaller batch takes the remainder, as the official JointVAE loader does",
    )
    precision: Literal["fp32", "bf16", "mixed", "auto"] = Field(
        "fp32",
        title="Arithmetic of the training step. fp32: the same on every machine; bf16: bfloat16 autocast "
        "(weights, loss terms and noise stay float32), faster where the hardware has bf16 (AVX-512 BF16, "
        "AMX, recent GPUs) and about 10 times slower where it has not; mixed: bfloat16 only in the "
        "convolution bodies of encoder and decoder, the fully connected layers, latent heads, sampling and "
        "loss in float32, and float32 throughout where the hardware has no bf16; auto: bf16 where the "
        "hardware has it, else fp32, so a preset trains differently on different machines",
    )

    @model_validator(mode="after")
    def _has_length(self) -> TrainConfig:
        if self.epochs is None and self.steps is None:
            raise ValueError("set train.epochs or train.steps")
        return self

    @model_validator(mode="after")
    def _schedule_fits(self) -> TrainConfig:
        if self.lr_min > self.lr:
            raise ValueError(f"train.lr_min ({self.lr_min}) must not exceed train.lr ({self.lr})")
        if self.steps is not None and self.lr_warmup_steps >= self.steps:
            raise ValueError(
                f"train.lr_warmup_steps ({self.lr_warmup_steps}) must be fewer than train.steps ({self.steps})"
            )
        return self


class Preset(Section):
    description: str = Field(title="One line saying what this preset trains")
    summary: str = Field(
        "",
        max_length=SUMMARY_MAX,
        title="A few words for the one-line list of `jvae presets` (the dataset and the source); empty: the "
        "description, cut to fit",
    )
    data: DataConfig
    model: ModelConfig
    loss: LossConfig
    train: TrainConfig

    @model_validator(mode="before")
    @classmethod
    def _loss_kind_defaults(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("loss"), dict):
            raw = {**raw, "loss": _loss_section(raw["loss"])}
        return raw

    @model_validator(mode="after")
    def _kind_fits_the_rest(self) -> Preset:
        kind = kind_of(self.loss)
        if not kind.labelled and (self.model.classes or self.model.generic):
            labelled = ", ".join(name for name, k in KINDS.items() if k.labelled)
            raise ValueError(f"model.classes and model.generic are for loss.kind {labelled}")
        if kind.labelled and DATASETS[self.data.dataset].classes is None:
            with_classes = ", ".join(name for name, entry in DATASETS.items() if entry.classes)
            raise ValueError(f"{kind.name} needs labels; data.dataset must be one of {with_classes}")
        if kind.check is not None:
            kind.check(self.loss, self.model)
        return self

    @model_validator(mode="after")
    def _architecture_fits_images(self) -> Preset:
        size = ARCHITECTURE_SIZES.get(self.model.architecture, self.data.image_size)
        if size != self.data.image_size:
            raise ValueError(
                f"model.architecture {self.model.architecture!r} needs data.image_size = {size}, "
                f"got {self.data.image_size}"
            )
        return self


def _loss_section(raw: dict[str, Any]) -> dict[str, Any]:
    """The loss section with its kind made explicit (the paper's model when unset) and unset fields dropped:
    checkpoints written before the kinds had their own sections hold every kind's fields, unused ones null."""
    section = {key: value for key, value in raw.items() if value is not None}
    section.setdefault("kind", DEFAULT_KIND)
    return section


_LOSS = TypeAdapter(LossConfig)


def loss_config(**fields: Any) -> LossBase:
    """A validated loss section of the kind `fields["kind"]` names (jointvae when absent)."""
    try:
        return _LOSS.validate_python(_loss_section(fields))
    except ValidationError as exc:
        raise PresetError(format_validation_error(exc, "loss", prefix=("loss",))) from None


# ----------------------------------------------------------------------------------------------- errors


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names valid at the parent of `loc`, to tell a user what they could have meant."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or not isinstance(part, str):
            return []
        if current is not model and issubclass(current, LossBase) and part in KINDS:
            current = KINDS[part].config  # the loss section's tag: the kind whose fields apply
            continue
        if part not in current.model_fields:
            return []
        annotation = current.model_fields[part].annotation
        options = get_args(annotation) or (annotation,)  # an optional section is `Model | None`
        if any(isinstance(o, type) and issubclass(o, LossBase) for o in get_args(options[0])):
            current = LossBase  # the loss section: a union over the kinds, resolved by the next part
            continue
        current = next((o for o in options if isinstance(o, type) and issubclass(o, BaseModel)), None)
    return list(current.model_fields) if current is not None else []


def _without_kind_tag(loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], str | None]:
    """A loss field's path as the user writes it (loss.beta, not loss.beta-vae.beta), and its kind."""
    if len(loc) >= 2 and loc[0] == "loss" and loc[1] in KINDS:
        return (loc[0], *loc[2:]), str(loc[1])
    return loc, None


def format_validation_error(error: ValidationError, source: str, prefix: tuple[str, ...] = ()) -> str:
    """One line per invalid field: its dotted path, what is wrong, and what is allowed; a loss field names
    the kind it was checked against."""
    lines = []
    for item in error.errors():
        raw_loc = (*prefix, *item["loc"])
        loc, kind = _without_kind_tag(raw_loc)
        path = ".".join(str(p) for p in loc) or "(preset)"
        if kind is not None and item["type"] == "extra_forbidden" and len(loc) == 2:
            own = [f for f in KINDS[kind].config.model_fields if f not in LossBase.model_fields]
            fields = ", ".join(own + [f for f in LossBase.model_fields if f != "kind"])
            lines.append(f"{source}: {path} is not used by kind {kind!r}; its fields: {fields}")
        elif kind is not None and item["type"] == "missing" and len(loc) == 2:
            lines.append(f"{source}: kind {kind!r} needs {path}")
        elif item["type"] == "union_tag_invalid":
            given = item.get("ctx", {}).get("tag", "?")
            lines.append(f"{source}: {path}.kind: unknown kind {given!r}; known: {', '.join(KINDS)}")
        elif item["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(Preset, ("loss", kind, *loc[1:]) if kind else loc))
            lines.append(f"{source}: {path}: unknown key; allowed here: {allowed}")
        elif item["type"] == "missing":
            lines.append(f"{source}: {path}: missing; it is required")
        else:
            message = item["msg"].removeprefix("Value error, ")
            given = item.get("input")
            text = repr(given) if len(repr(given)) <= 80 else repr(given)[:77] + "..."
            shown = "" if isinstance(given, dict) else f" (got {text})"  # a whole section says nothing new
            lines.append(f"{source}: {path}: {message}{shown}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- locating


def presets_dir() -> Path:
    """Presets ship inside the wheel as jvae/_presets; a source checkout keeps them at top level."""
    packaged = Path(str(resources.files("jvae"))) / "_presets"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.toml"))


def preset_path(name_or_path: str) -> Path:
    """A preset name is a file stem in presets/; anything that looks like a path is the user's own file."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix == ".toml" or candidate.parent != Path("."):
        if not candidate.is_file():
            raise PresetError(f"preset file not found: {candidate}")
        return candidate
    packaged = presets_dir() / f"{name_or_path}.toml"
    if packaged.is_file():
        return packaged
    if candidate.is_file():
        return candidate
    raise PresetError(f"unknown preset {name_or_path!r}; known presets: {', '.join(preset_names())}")


# ----------------------------------------------------------------------------------------------- loading


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return read_toml(path)
    except RunFileError as exc:
        raise PresetError(str(exc)) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value`, the value read as a TOML value (numbers, booleans, lists) or else a bare string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise PresetError(
            f"--set {text!r}: expected section.key=value, e.g. loss.continuous_capacity.stop=10"
        )
    raw = raw.strip()
    if nesting_depth(raw) > NESTING_MAX:
        raise PresetError(f"--set {key}: a value nested deeper than {NESTING_MAX} levels")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    merged = json.loads(json.dumps(raw))
    for text in overrides:
        parts, value = parse_override(text)
        node = merged
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise PresetError(f"--set {text!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return merged


def validate_preset(raw: dict[str, Any], source: str) -> Preset:
    try:
        return Preset.model_validate(raw)
    except ValidationError as exc:
        raise PresetError(format_validation_error(exc, source)) from None


def with_seed(preset: Preset, seed: int) -> Preset:
    """`preset` with train.seed set to `seed` (validated like a file), e.g. one model of a stack."""
    body = preset.model_dump(mode="json")
    return validate_preset({**body, "train": {**body["train"], "seed": seed}}, f"seed {seed}")


def load_preset(name_or_path: str, overrides: Iterable[str] = ()) -> tuple[str, Preset]:
    """Resolve a preset name or file, apply `--set` overrides and validate; returns (name, preset)."""
    path = preset_path(name_or_path)
    raw = apply_overrides(_read_toml(path), overrides)
    return path.stem, validate_preset(raw, f"preset {path.stem!r}")


def preset_to_dict(preset: Preset) -> dict[str, Any]:
    """Exactly the preset's fields, JSON-ready (None fields kept, so the schema is complete)."""
    return preset.model_dump(mode="json")


def preset_to_toml(preset: Preset) -> str:
    import tomli_w

    data = preset.model_dump(mode="json", exclude_none=True)
    return tomli_w.dumps(data)


def field_notes(section: BaseModel, prefix: str = "") -> list[tuple[str, Any, str]]:
    """Every set field of `section` as (dotted path, value, what it means), nested sections in order: the
    one line per field that `jvae presets show --explain` prints beside its value."""
    notes: list[tuple[str, Any, str]] = []
    for name, info in type(section).model_fields.items():
        value = getattr(section, name)
        path = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            notes += field_notes(value, f"{path}.")
        elif value is not None:
            notes.append((path, value, info.title or ""))
    return notes
