"""The building blocks every preset section is made of, kept apart from `presets` so that model kinds and
datasets can declare their own sections without importing the whole schema (which imports them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jvae_cli.limits import STEPS_MAX


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

    @model_validator(mode="after")
    def _scale_needs_a_continuous_likelihood(self) -> LossBase:
        if self.noise_scale is not None and self.reconstruction not in ("gaussian", "laplace"):
            raise ValueError("loss.noise_scale is for reconstruction = gaussian or laplace")
        return self
