"""Values that change over a run: the run's length, the learning rate, Adam's epsilon and the Gumbel-Softmax
temperature.

Each is a pure function of the optimiser step (1 for the first batch), so a resumed run picks up exactly
where it stopped without any scheduler state in the checkpoint. The capacity ramps live with the loss
(`sections.CapacitySchedule`) because only the loss reads them.
"""

from __future__ import annotations

import math

from jvae.base.sections import ramp
from jvae.modeling.presets import ModelConfig, Preset, TrainConfig

ADAM_EPS = 1e-8  # Adam's epsilon, the same default in PyTorch 0.4 and today


def steps_per_epoch(train: TrainConfig, dataset_size: int) -> int:
    """Batches in one pass over the data: whole batches only (last_batch drop), or with a last smaller batch
    taking the remainder (keep, as the official JointVAE loader does: 938 MNIST steps instead of 937)."""
    whole, remainder = divmod(dataset_size, train.batch_size)
    if train.last_batch == "keep" and remainder:
        whole += 1
    return max(whole, 1)


def total_steps(preset: Preset, dataset_size: int) -> int:
    """Optimiser steps of the whole run: train.steps, else epochs of `steps_per_epoch` batches."""
    if preset.train.steps is not None:
        return preset.train.steps
    return steps_per_epoch(preset.train, dataset_size) * (preset.train.epochs or 1)


def adam_eps(train: TrainConfig, step: int, beta2: float) -> float:
    """The epsilon today's Adam must be given at optimiser step `step` to take the step `train.adam` names.

    Today's Adam divides by sqrt(v / (1 - beta2^t)) + eps; PyTorch 0.4.1's divided by sqrt(v) + eps and
    folded the bias correction into the step size, which is today's formula with eps / sqrt(1 - beta2^t).
    At step 1 that epsilon is 31.6 times larger; the factor falls below 1.01 after about 5000 steps.
    """
    if train.adam != "pytorch-0.4":
        return ADAM_EPS
    return ADAM_EPS / math.sqrt(1.0 - beta2 ** max(step, 1))


def learning_rate(train: TrainConfig, step: int, total: int) -> float:
    """The Adam learning rate of optimiser step `step` of a `total`-step run.

    A linear warm-up (lr * step / lr_warmup_steps) protects the first updates of a high learning rate; after
    it, `constant` holds lr and `cosine` falls from lr to lr_min at the last step, where it then stays.
    """
    step = max(step, 1)
    warmup = train.lr_warmup_steps
    if step <= warmup:
        return train.lr * step / warmup
    if train.lr_schedule == "constant":
        return train.lr
    span = max(total - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    return train.lr_min + (train.lr - train.lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


def temperature(model: ModelConfig, step: int) -> float:
    """The Gumbel-Softmax temperature of optimiser step `step`.

    Without model.temperature_start it is model.temperature throughout. With it, it moves from
    temperature_start at step 0 to model.temperature at temperature_steps and stays there: geometrically
    (a constant factor per step, the exponential decay of Jang et al. 2017) or linearly.
    """
    if model.temperature_start is None or model.temperature_steps is None:
        return model.temperature
    start, end = model.temperature_start, model.temperature
    if model.temperature_curve == "linear":
        return ramp(start, end, model.temperature_steps, step)
    fraction = min(max(step, 0) / model.temperature_steps, 1.0)
    return start * (end / start) ** fraction
