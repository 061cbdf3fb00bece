"""Presets: the typed, validated home of every default jvae uses.

A preset is a TOML file whose stem is its name (DESIGN.md section 3). Nothing else in jvae holds a default for
a dataset, model, loss or training setting; the CLI only passes a preset, overrides and a run directory. The
schema forbids unknown keys so that a typo fails loudly with its field path instead of being ignored.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jvae_cli.errors import PresetError

# ----------------------------------------------------------------------------------------------- schema

DatasetName = Literal["dsprites", "mnist", "fashion-mnist", "chairs", "celeba", "mpi3d", "digits", "folder"]
ARCHITECTURE_SIZES = {"conv32": 32, "conv64": 64}  # the mlp architecture takes either size
SPLIT_DATASETS = ("mnist", "fashion-mnist", "chairs", "celeba")  # those with a train/test split


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    dataset: DatasetName = Field(title="Dataset registry name")
    image_size: Literal[32, 64] = Field(title="Side of the square images the model sees, in pixels")
    channels: Literal[1, 3] = Field(title="1 for greyscale, 3 for RGB")
    source: Literal["file", "generated"] = Field(
        "file", title="Read the dataset's files, or generate it (dsprites only)"
    )
    path: str | None = Field(
        None, title="Where the dataset lives; --data and JVAE_DATA take over when this is unset"
    )
    download: bool = Field(False, title="Fetch the dataset on first use where it has a public address")
    split: Literal["all", "train", "test"] = Field(
        "all",
        title="chairs: held-out chairs (every tenth) or the rest; celeba: the official partition; mnist, "
        "fashion-mnist: the 10000 test images (test) or the 60000 training images (all, train)",
    )
    on_unreadable: Literal["fail", "skip"] = Field(
        "fail", title="folder datasets: stop at an unreadable image, or leave it out and report it"
    )

    @model_validator(mode="after")
    def _split_where_the_dataset_has_one(self) -> DataConfig:
        if self.split != "all" and self.dataset not in SPLIT_DATASETS:
            raise ValueError(
                f"{self.dataset!r} has no {self.split} split; data.split is for {', '.join(SPLIT_DATASETS)}"
            )
        return self

    @model_validator(mode="after")
    def _generated_only_for_dsprites(self) -> DataConfig:
        if self.source == "generated" and self.dataset != "dsprites":
            raise ValueError(f"source 'generated' exists only for dsprites, not {self.dataset!r}")
        return self


class ModelConfig(_Section):
    architecture: Literal["conv32", "conv64", "mlp"] = Field(
        title="Dupont 2018 appendix B: conv32 for 32x32 images, conv64 for 64x64; mlp: fully connected, "
        "ReLU encoder and tanh decoder of width `hidden` (Grouped-VAE's dSprites setting)"
    )
    continuous: int = Field(ge=0, le=4096, title="Number of Gaussian latent units")
    discrete: list[int] = Field(
        default_factory=list, title="Category count of each Gumbel-Softmax latent variable (each >= 2)"
    )
    temperature: float = Field(
        0.67,
        gt=0,
        title="Gumbel-Softmax temperature used while training (with temperature_start: the one it anneals to)",
    )
    temperature_start: float | None = Field(
        None,
        gt=0,
        title="Anneal the temperature from this value at step 0 to `temperature` at temperature_steps "
        "(unset: constant)",
    )
    temperature_steps: int | None = Field(
        None, ge=1, title="Steps over which the temperature moves from temperature_start to temperature"
    )
    temperature_curve: Literal["exponential", "linear"] = Field(
        "exponential", title="exponential: the same factor every step (Jang et al. 2017); linear"
    )
    hidden: int = Field(
        256, ge=1, title="Width of the fully connected layer between convolutions and latents"
    )
    classes: int = Field(
        0,
        ge=0,
        title="class-conditional: number of label classes; the w units' encoder head and the decoder read "
        "the one-hot label (0: unconditional)",
    )
    generic: int = Field(
        0, ge=0, title="class-conditional: how many continuous units (the first ones) are class-generic z"
    )

    @model_validator(mode="after")
    def _annealing_is_whole(self) -> ModelConfig:
        if self.temperature_start is None and self.temperature_steps is not None:
            raise ValueError("model.temperature_steps needs model.temperature_start (where annealing begins)")
        if self.temperature_start is not None and self.temperature_steps is None:
            raise ValueError(
                "model.temperature_start needs model.temperature_steps (how long annealing lasts)"
            )
        return self

    @model_validator(mode="after")
    def _has_latents(self) -> ModelConfig:
        if any(k < 2 for k in self.discrete):
            raise ValueError(f"every discrete variable needs at least 2 categories, got {self.discrete}")
        if self.continuous == 0 and not self.discrete:
            raise ValueError(
                "the model needs at least one latent unit (continuous > 0 or a discrete variable)"
            )
        return self


class CapacitySchedule(_Section):
    start: float = Field(0.0, ge=0, title="Capacity in nats at step 0")
    stop: float = Field(ge=0, title="Capacity in nats reached at `steps` and held afterwards")
    steps: int = Field(ge=1, title="Steps over which the capacity rises linearly from start to stop")
    gamma: float = Field(ge=0, title="Weight of |KL - C| in the loss (with gamma_start: the one it ramps to)")
    gamma_start: float | None = Field(
        None,
        ge=0,
        title="Ramp the weight linearly from this value at step 0 to `gamma` at gamma_steps (unset: constant); "
        "a weak early weight lets the code carry information before the capacity is enforced",
    )
    gamma_steps: int | None = Field(None, ge=1, title="Steps over which the weight moves to `gamma`")

    @model_validator(mode="after")
    def _ramp_is_whole(self) -> CapacitySchedule:
        if (self.gamma_start is None) != (self.gamma_steps is None):
            raise ValueError("gamma_start and gamma_steps go together: set both or neither")
        return self

    def weight(self, step: int) -> float:
        """The weight of |KL - C| at optimiser step `step`."""
        if self.gamma_start is None or self.gamma_steps is None:
            return self.gamma
        fraction = min(max(step, 0) / self.gamma_steps, 1.0)
        return self.gamma_start + (self.gamma - self.gamma_start) * fraction


LOSS_FIELDS: dict[str, tuple[set[str], set[str]]] = {  # kind: (fields it needs, fields it may set)
    "jointvae": ({"continuous_capacity", "discrete_capacity"}, set()),
    "vae": (set(), set()),
    "beta-vae": ({"beta"}, set()),
    "cc-beta-vae": ({"continuous_capacity"}, set()),
    "grouped-vae": ({"beta", "groups"}, set()),
    "beta-tcvae": ({"alpha", "beta", "gamma"}, {"estimator"}),
    "factor-vae": ({"gamma"}, {"adversary_lr"}),
    "class-conditional": (
        {"continuous_capacity", "specific_capacity"},
        {"adversary_lr", "adversary_weight", "classifier_reads"},
    ),
}
LABELLED_DATASETS = ("mnist", "fashion-mnist", "digits")


class LossConfig(_Section):
    kind: Literal[
        "jointvae",
        "vae",
        "beta-vae",
        "cc-beta-vae",
        "grouped-vae",
        "beta-tcvae",
        "factor-vae",
        "class-conditional",
    ] = Field(
        "jointvae",
        title="jointvae (Dupont 2018), vae, beta-vae (Higgins 2017), cc-beta-vae (Burgess 2017: one capacity on "
        "the total KL), grouped-vae (Halevi: reconstruction from each prefix of latent groups), beta-tcvae "
        "(Chen 2018: KL split into index-code MI, total correlation, dimension-wise KL), factor-vae (Kim & "
        "Mnih 2018: total correlation from a discriminator), class-conditional (Kondamudi & Balasubramanian "
        "2019: class-generic z and class-specific w)",
    )
    continuous_capacity: CapacitySchedule | None = Field(
        None,
        title="C_z: capacity of the continuous latents (cc-beta-vae: of the whole KL; class-conditional: of "
        "the generic units z, its gamma is the paper's beta)",
    )
    discrete_capacity: CapacitySchedule | None = Field(
        None, title="C_c: capacity of the discrete latents, clipped at the sum of log(category count)"
    )
    specific_capacity: CapacitySchedule | None = Field(
        None,
        title="class-conditional: C_w, capacity of the class-specific units w (its gamma is the paper's)",
    )
    alpha: float | None = Field(None, ge=0, title="beta-tcvae: weight of the index-code mutual information")
    beta: float | None = Field(
        None, ge=0, title="beta-vae, grouped-vae: weight of the KL term; beta-tcvae: of the total correlation"
    )
    gamma: float | None = Field(
        None, ge=0, title="beta-tcvae: weight of the dimension-wise KL; factor-vae: of the total correlation"
    )
    estimator: Literal["mws", "mss"] | None = Field(
        None,
        title="beta-tcvae: how log q(z) is estimated from a batch: minibatch-weighted (mws, the default) or "
        "the unbiased minibatch-stratified one (mss)",
    )
    adversary_lr: float | None = Field(
        None, gt=0, title="factor-vae, class-conditional: Adam learning rate of the second network (1e-4)"
    )
    adversary_weight: float | None = Field(
        None, ge=0, title="class-conditional: weight of the classifier's loss the VAE step maximises (1)"
    )
    classifier_reads: Literal["z", "w"] | None = Field(
        None,
        title="class-conditional: the units the classifier trains on in its own step; the paper found w "
        "(the default) better than z",
    )
    groups: list[int] | None = Field(
        None,
        title="grouped-vae: sizes of the consecutive groups of continuous units, summing to model.continuous",
    )
    objective_scale: Literal["image", "pixel"] = Field(
        "image",
        title="image: the optimiser steps on the loss per image, as logged; pixel: on the loss divided by "
        "H*W, as the official JointVAE code does (Adam ignores the scale except through its epsilon, which "
        "then damps the smallest gradients)",
    )
    reconstruction: Literal["bce-sum", "bce-official"] = Field(
        "bce-sum",
        title="bce-sum: per-image sum of pixel BCE; bce-official: the official code's mean BCE times H*W",
    )

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> LossConfig:
        needed, optional = LOSS_FIELDS[self.kind]
        every = set().union(*(n | o for n, o in LOSS_FIELDS.values()))
        for name in sorted(every):
            value = getattr(self, name)
            if name in needed and value is None:
                raise ValueError(f"kind {self.kind!r} needs loss.{name}")
            if name not in needed | optional and value is not None:
                raise ValueError(f"loss.{name} is not used by kind {self.kind!r}; remove it")
        return self

    @property
    def adversary_learning_rate(self) -> float:
        return self.adversary_lr if self.adversary_lr is not None else 1e-4


class TrainConfig(_Section):
    batch_size: int = Field(64, ge=1, title="Images per step")
    lr: float = Field(gt=0, title="Adam learning rate (with a schedule: its peak)")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant",
        title="After warm-up, hold lr (constant) or fall from lr to lr_min along a half cosine ending at the "
        "last step (cosine)",
    )
    lr_warmup_steps: int = Field(0, ge=0, title="Steps of linear warm-up from 0 to lr (0: none)")
    lr_min: float = Field(0.0, ge=0, title="cosine: the learning rate at the last step")
    epochs: int | None = Field(None, ge=1, title="Passes over the dataset (steps wins when both are set)")
    steps: int | None = Field(None, ge=1, title="Optimiser steps; one step is one batch")
    seed: int = Field(0, ge=0, title="Seed of initialisation, data order and sampling noise")
    log_every: int = Field(100, ge=1, title="Steps between lines of metrics.jsonl")
    checkpoint_every: int = Field(5000, ge=1, title="Steps between checkpoints")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        title="Arithmetic of the training step: bf16 autocast (weights and loss stay float32) where the "
        "hardware has fast bfloat16 (auto), or always fp32 / bf16",
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


class Preset(_Section):
    description: str = Field(title="One line saying what this preset trains")
    data: DataConfig
    model: ModelConfig
    loss: LossConfig
    train: TrainConfig

    @model_validator(mode="after")
    def _groups_fit_latents(self) -> Preset:
        groups = self.loss.groups
        if groups is not None:
            if any(g < 1 for g in groups) or sum(groups) != self.model.continuous:
                raise ValueError(
                    f"loss.groups {groups} must be positive and sum to model.continuous ({self.model.continuous})"
                )
            if self.model.discrete:
                raise ValueError("grouped-vae groups continuous units only; set model.discrete = []")
        return self

    @model_validator(mode="after")
    def _classes_fit_kind(self) -> Preset:
        model, loss = self.model, self.loss
        if loss.kind != "class-conditional":
            if model.classes or model.generic:
                raise ValueError("model.classes and model.generic are for loss.kind 'class-conditional'")
            return self
        if model.classes < 2:
            raise ValueError("class-conditional needs model.classes >= 2 (the number of labels)")
        if not 1 <= model.generic < model.continuous:
            raise ValueError(
                f"class-conditional needs 1 <= model.generic < model.continuous ({model.continuous}): "
                "the first model.generic units are z, the rest w"
            )
        if model.discrete:
            raise ValueError("class-conditional uses continuous units only; set model.discrete = []")
        if (loss.classifier_reads or "w") == "w" and 2 * model.generic != model.continuous:
            raise ValueError(
                "a classifier that trains on w and is applied to z needs as many w units as z units: "
                f"model.continuous = 2 * model.generic (got {model.continuous} and {model.generic})"
            )
        if self.data.dataset not in LABELLED_DATASETS:
            raise ValueError(
                f"class-conditional needs labels; data.dataset must be one of {', '.join(LABELLED_DATASETS)}"
            )
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


# ----------------------------------------------------------------------------------------------- errors


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names valid at the parent of `loc`, to tell a user what they could have meant."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            return []
        annotation = current.model_fields[part].annotation
        options = get_args(annotation) or (annotation,)  # an optional section is `Model | None`
        current = next((o for o in options if isinstance(o, type) and issubclass(o, BaseModel)), None)
    return list(current.model_fields) if current is not None else []


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per invalid field: its dotted path, what is wrong, and what is allowed."""
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        path = ".".join(str(p) for p in loc) or "(preset)"
        if item["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(Preset, loc))
            lines.append(f"{source}: {path}: unknown key; allowed here: {allowed}")
        elif item["type"] == "missing":
            lines.append(f"{source}: {path}: missing; it is required")
        else:
            message = item["msg"].removeprefix("Value error, ")
            given = item.get("input")
            shown = "" if isinstance(given, dict) else f" (got {given!r})"  # a whole section says nothing new
            lines.append(f"{source}: {path}: {message}{shown}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- locating


def presets_dir() -> Path:
    """Presets ship inside the wheel as jvae_cli/_presets; a source checkout keeps them at top level."""
    packaged = Path(str(resources.files("jvae_cli"))) / "_presets"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "presets"


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
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PresetError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise PresetError(f"{path}: cannot read ({exc.strerror})") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value`, the value read as a TOML value (numbers, booleans, lists) or else a bare string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise PresetError(
            f"--set {text!r}: expected section.key=value, e.g. loss.continuous_capacity.stop=10"
        )
    raw = raw.strip()
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
