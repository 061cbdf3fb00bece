"""The preset sections the registries read, kept below `presets` so that model kinds and datasets declare and
read their own sections without importing the whole schema (which imports them): the base of every loss
section, the model section and the data section as a dataset opens it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jvae.base.limits import (
    CATEGORIES_MAX,
    CLASSES_MAX,
    DISCRETE_VARIABLES_MAX,
    HIDDEN_MAX,
    LATENT_MAX,
    STEPS_MAX,
)


class Section(BaseModel):
    """Strict: an unknown key is a typo, refused with its path rather than ignored; a value of the wrong type
    (`steps = true`, `lr = "1e-3"`) or an infinite or NaN number is refused rather than converted."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


def ramp(start: float, stop: float, steps: int, step: int) -> float:
    """Linear from `start` at step 0 to `stop` at `steps`, then held: the shape of every capacity, weight
    warm-up and linear annealing in jvae."""
    fraction = min(max(step, 0) / steps, 1.0)
    return start + (stop - start) * fraction


class CapacitySchedule(Section):
    start: float = Field(0.0, ge=0, title="Capacity in nats at step 0")
    stop: float = Field(ge=0, title="Capacity in nats reached at `steps` and held afterwards")
    steps: int = Field(
        ge=1, le=STEPS_MAX, title="Steps over which the capacity rises linearly from start to stop"
    )
    gamma: float = Field(ge=0, title="Weight of |KL - C| in the loss (with gamma_start: the one it ramps to)")
    gamma_start: float | None = Field(
        None,
        ge=0,
        title="Ramp the weight linearly from this value at step 0 to `gamma` at gamma_steps (unset: constant); "
        "a weak early weight lets the code carry information before the capacity is enforced",
    )
    gamma_steps: int | None = Field(
        None, ge=1, le=STEPS_MAX, title="Steps over which the weight moves to `gamma`"
    )

    @model_validator(mode="after")
    def _ramp_is_whole(self) -> CapacitySchedule:
        if (self.gamma_start is None) != (self.gamma_steps is None):
            raise ValueError("gamma_start and gamma_steps go together: set both or neither")
        return self

    def capacity(self, step: int, ceiling: float = float("inf")) -> float:
        """C at optimiser step `step`, never above `ceiling`."""
        return min(ramp(self.start, self.stop, self.steps, step), ceiling)

    def weight(self, step: int) -> float:
        """The weight of |KL - C| at optimiser step `step`."""
        if self.gamma_start is None or self.gamma_steps is None:
            return self.gamma
        return ramp(self.gamma_start, self.gamma, self.gamma_steps, step)


class Jitter(Section):
    """A small random affine move of each image, drawn anew for every image of every step: what the discrete
    code of a kind with a consistency term must not change under."""

    rotation: float = Field(10.0, ge=0, le=180, title="Largest rotation, degrees either way")
    translation: float = Field(
        0.1, ge=0, le=0.5, title="Largest shift along each axis, as a fraction of the image side"
    )
    scale: float = Field(0.1, ge=0, lt=1, title="Largest zoom in or out, as a fraction (0.1: 0.9x to 1.1x)")


class LossBase(Section):
    """What every model kind's loss section has; each kind adds its own fields and defaults."""

    kind: str = Field(title="The model kind; each kind's module documents its fields")
    objective_scale: Literal["image", "pixel"] = Field(
        "image",
        title="image: the optimiser steps on the loss per image, as logged; pixel: on the loss divided by "
        "H*W, as the official JointVAE code does (Adam ignores the scale except through its epsilon, which "
        "then damps the smallest gradients)",
    )
    reconstruction: Literal["bce-sum", "bce-official", "gaussian", "laplace"] = Field(
        "bce-sum",
        title="The decoder's likelihood. bce-sum: Bernoulli, per-image sum of pixel BCE (binary or near-binary "
        "images: dSprites, MNIST); bce-official: the official code's mean BCE times H*W; gaussian: fixed "
        "variance, squared error (colour images); laplace: absolute error, robust to outlying pixels",
    )
    noise_scale: float | None = Field(
        None,
        gt=0,
        title="gaussian: sigma (unset: 1/sqrt(2), so the data term is the sum of squared errors); laplace: b "
        "(unset: 1, the sum of absolute errors)",
    )

    def jitter(self) -> Jitter | None:
        """The move whose jittered copy of each batch the training step encodes for this loss, or None: only
        kinds with a consistency term read one."""
        return None

    @model_validator(mode="after")
    def _scale_needs_a_continuous_likelihood(self) -> LossBase:
        if self.noise_scale is not None and self.reconstruction not in ("gaussian", "laplace"):
            raise ValueError("loss.noise_scale is for reconstruction = gaussian or laplace")
        return self


class DataSection(Section):
    """The data section as datasets read it; `presets.DataConfig` checks the name against the registry."""

    dataset: str = Field(title="Dataset registry name")
    image_size: Literal[32, 64, 128] = Field(title="Side of the square images the model sees, in pixels")
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


class ModelConfig(Section):
    architecture: Literal["conv32", "conv64", "conv128", "mlp"] = Field(
        title="Dupont 2018 appendix B: conv32 for 32x32 images, conv64 for 64x64; conv128: conv64 with one more "
        "layer each side, for 128x128; mlp: fully connected, "
        "ReLU encoder and tanh decoder of width `hidden` (Grouped-VAE's dSprites setting)"
    )
    continuous: int = Field(ge=0, le=4096, title="Number of Gaussian latent units")
    discrete: list[int] = Field(
        default_factory=list,
        max_length=DISCRETE_VARIABLES_MAX,
        title=f"Category count of each Gumbel-Softmax latent variable (each 2 to {CATEGORIES_MAX})",
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
        None,
        ge=1,
        le=STEPS_MAX,
        title="Steps over which the temperature moves from temperature_start to temperature",
    )
    temperature_curve: Literal["exponential", "linear"] = Field(
        "exponential", title="exponential: the same factor every step (Jang et al. 2017); linear"
    )
    hidden: int = Field(
        256, ge=1, le=HIDDEN_MAX, title="Width of the fully connected layer between convolutions and latents"
    )
    classes: int = Field(
        0,
        ge=0,
        le=CLASSES_MAX,
        title="class-conditional: number of label classes; the w units' encoder head and the decoder read "
        "the one-hot label (0: unconditional)",
    )
    generic: int = Field(
        0,
        ge=0,
        le=LATENT_MAX,
        title="class-conditional: how many continuous units (the first ones) are class-generic z",
    )
    init: Literal["current", "pytorch-0.4"] = Field(
        "current",
        title="Initial weights. current: today's PyTorch layer defaults; pytorch-0.4: PyTorch 0.4.1's, with "
        "which the released JointVAE models were trained (transposed convolutions drawn within "
        "1/sqrt(in_channels*16) instead of 1/sqrt(out_channels*16); other layers as today)",
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
        if any(k > CATEGORIES_MAX for k in self.discrete):
            raise ValueError(
                f"a discrete variable has at most {CATEGORIES_MAX} categories, got {self.discrete}"
            )
        if self.continuous + sum(self.discrete) > LATENT_MAX:
            raise ValueError(
                f"continuous units and discrete categories together are at most {LATENT_MAX}, got "
                f"{self.continuous + sum(self.discrete)}"
            )
        if self.continuous == 0 and not self.discrete:
            raise ValueError(
                "the model needs at least one latent unit (continuous > 0 or a discrete variable)"
            )
        return self
