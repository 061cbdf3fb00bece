"""One training step as `jvae train` runs it (and `jvae bench` times it): the batch, the VAE update, the
critic update, optionally split by process and timed by phase.

The VAE's loss is computed inside `Objective.forward`, a module, so that DistributedDataParallel can wrap it:
DDP averages the gradients of what its wrapped forward computed. Under bf16 autocast the convolutions and
matrix products run in bfloat16 while the loss terms, the sampling noise and the weights stay float32.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from jvae.data.capabilities import labels_of
from jvae.data.sources import ImageSource
from jvae.kinds import kind_of, model_objective
from jvae.modeling.augment import jittered
from jvae.modeling.builder import Training, build_training
from jvae.modeling.critics import Critic, CriticInputs
from jvae.modeling.losses import LossTerms
from jvae.modeling.model import JointVAE
from jvae.modeling.presets import Preset
from jvae.modeling.schedules import adam_eps, learning_rate, steps_per_epoch, temperature, total_steps
from jvae.training.distributed import Cluster, global_mean

SECOND_ORDER = 7919  # seed offset of the data order of the second batch (kinds with `second_batch`)
Mark = Callable[[str], None]


def epoch_order(seed: int, epoch: int, size: int) -> Tensor:
    """The data order of one epoch, a pure function of (seed, epoch) so resuming needs no saved order."""
    generator = torch.Generator().manual_seed(seed * (1 << 20) + epoch)
    return torch.randperm(size, generator=generator)


class Objective(nn.Module):
    """The VAE loss of one (local) batch; returns (loss, every term, the detached sampled codes)."""

    def __init__(
        self,
        model: JointVAE,
        preset: Preset,
        dataset_size: int,
        critic: Critic | None = None,
        shard: tuple[int, int] | None = None,
        bf16: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.preset = preset
        self.dataset_size = dataset_size
        self.critic = critic
        self.shard = shard
        self.bf16 = bf16
        self.kl_mean = global_mean(Cluster(shard[0], shard[1])) if shard is not None else None
        self.gradient_scale = gradient_scale(preset)
        self.jitter = preset.loss.jitter()  # the move whose copy of each batch the loss reads, or None

    def forward(
        self, x: Tensor, labels: Tensor | None, step: int, noise: torch.Generator
    ) -> tuple[Tensor, LossTerms, Tensor]:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            posterior = self.model.encode(x, labels)
            latent = posterior.sample(temperature(self.preset.model, step), noise, self.shard)
            moved = None
            if self.jitter is not None:
                moved = self.model.encode(jittered(x, self.jitter, noise, self.shard), labels)
            terms = model_objective(
                self.model,
                x,
                posterior,
                latent,
                step,
                self.preset.loss,
                dataset_size=self.dataset_size,
                critic=self.critic,
                labels=labels,
                kl_mean=self.kl_mean,
                jittered=moved,
            )
        loss = terms.loss if self.gradient_scale == 1.0 else terms.loss * self.gradient_scale
        return loss, terms, latent.detach()


def vae_step(
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    labels: Tensor | None,
    step: int,
    noise: torch.Generator,
    mark: Mark | None = None,
) -> tuple[LossTerms, Tensor]:
    """Update the encoder and decoder on batch `x` at optimiser step `step` (1 for the first batch)."""
    mark = mark or (lambda phase: None)
    loss, terms, latent = objective(x, labels, step, noise)
    mark("forward")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    mark("backward")
    optimizer.step()
    mark("optimizer")
    return terms, latent


def critic_step(
    model: JointVAE,
    critic: Critic,
    preset: Preset,
    latent: Tensor,
    labels: Tensor | None,
    noise: torch.Generator,
    other_x: Tensor | None = None,
) -> Tensor:
    """Update the critic alone: its inputs are detached codes, so the encoder receives nothing. `other_x` is
    the second batch of kinds whose critic compares two."""
    return critic.train_step(CriticInputs(model, preset.model, latent, labels, noise, other_x))


class PhaseTimer:
    """Seconds spent per phase of the step; synchronises a GPU at each mark so time lands where it is spent."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}
        self.last = time.perf_counter()

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def restart(self) -> None:
        self.last = self._now()

    def __call__(self, phase: str) -> None:
        now = self._now()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self.last
        self.last = now


class Batches:
    """The batches of one run: global step k reads the k-th slice of its epoch's seeded data order (this
    process's share of it), laid out as the model reads it. The order lives on the device, so taking a
    batch of it never waits on a GPU."""

    def __init__(
        self,
        source: ImageSource,
        device: torch.device,
        preset: Preset,
        channels_last: bool,
        cluster: Cluster | None = None,
        second: bool = False,
    ) -> None:
        self.source, self.device, self.channels_last = source, device, channels_last
        self.seed = preset.train.seed
        self.batch_size = preset.train.batch_size
        self.cluster = cluster or Cluster()
        self.steps_per_epoch = steps_per_epoch(preset.train, len(source))
        self.second = second  # also a second, independent order (kinds with `second_batch`)
        self._epoch = -1
        self._order = self._second = torch.empty(0, dtype=torch.long)

    def _rows(self, order: Tensor, position: int) -> Tensor:
        """This process's equal share of the batch; under DDP a kept last batch smaller than the others is
        cut to a multiple of the processes, so each one's share (and its part of the noise) stays equal."""
        picks = order[position * self.batch_size : (position + 1) * self.batch_size]
        local = len(picks) // self.cluster.world
        start = self.cluster.rank * local
        return picks[start : start + local]

    def _images(self, rows: Tensor) -> Tensor:
        x = self.source.images(rows, self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __call__(self, index: int) -> tuple[Tensor, Tensor, Tensor | None]:
        """Global step `index`'s rows of the dataset, their images, and the second batch's images or None."""
        epoch, position = divmod(index, self.steps_per_epoch)
        if epoch != self._epoch:
            size = len(self.source)
            self._epoch, self._order = epoch, epoch_order(self.seed, epoch, size).to(self.device)
            if self.second:
                self._second = epoch_order(self.seed + SECOND_ORDER, epoch, size).to(self.device)
        rows = self._rows(self._order, position)
        other = self._images(self._rows(self._second, position)) if self.second else None
        return rows, self._images(rows), other


def gradient_scale(preset: Preset) -> float:
    """The factor on the loss that is differentiated: 1, or one over the pixels with objective_scale pixel."""
    return 1.0 / preset.data.image_size**2 if preset.loss.objective_scale == "pixel" else 1.0


def apply_learning_rate(param_groups: list[dict[str, Any]], preset: Preset, step: int, total: int) -> None:
    """Set the scheduled learning rate of optimiser step `step`, where the schedule is not constant, and the
    epsilon that makes today's Adam take PyTorch 0.4's step where train.adam asks for it."""
    train = preset.train
    if train.lr_schedule != "constant" or train.lr_warmup_steps > 0:
        lr = learning_rate(train, step, total)
        for group in param_groups:
            group["lr"] = lr
    if train.adam != "current":
        for group in param_groups:
            group["eps"] = adam_eps(train, step, group["betas"][1])


@dataclass
class MemberState:
    """What one run saves of its training: weights and optimiser state in the single model's layout (so a
    stacked member's checkpoint is a single run's), its noise generator and its critic's state."""

    weights: dict[str, Tensor]
    optimizer: dict[str, Any]
    noise: torch.Generator
    critic: dict[str, Any] | None


@dataclass
class Resumed:
    """What a run continues from, read from its checkpoint: weights, Adam state, noise generator state (None:
    keep the seed's, as a state saved on another device type cannot be set) and its critic's state."""

    weights: dict[str, Tensor]
    optimizer: dict[str, Any]
    noise: Tensor | None
    critic: dict[str, Any] | None = None


class Steps(Protocol):
    """What the loop asks of the steps it drives: `Stepper` (one run) or `stacking.stack_steps` (several).
    Members are numbered from 0; a single run is a stack of one."""

    count: int
    engine: str
    steps_per_epoch: int
    bf16: bool

    def step_members(
        self, index: int, mark: Mark | None = None
    ) -> list[tuple[LossTerms, dict[str, Any]]]: ...

    def member_model(self, member: int) -> JointVAE: ...

    def member_state(self, member: int) -> MemberState: ...

    def restore(self, states: list[Resumed]) -> None: ...

    @property
    def noises(self) -> list[torch.Generator]: ...

    def close(self) -> None: ...


class Stepper:
    """Runs global step k of a run: the k-th batch of the seeded data order, this process's share of it, the
    VAE update and, for kinds that have one, the critic update."""

    def __init__(
        self,
        preset: Preset,
        training: Training,
        source: ImageSource,
        device: torch.device,
        cluster: Cluster | None = None,
    ) -> None:
        self.preset, self.source, self.device = preset, source, device
        self.model, self.optimizer, self.noise = training.model, training.optimizer, training.noise
        self.critic, self.bf16, self.channels_last = training.critic, training.bf16, training.channels_last
        self.cluster = cluster or Cluster()
        self.kind = kind_of(preset.loss)
        self.batches = Batches(
            source, device, preset, self.channels_last, self.cluster, self.kind.second_batch
        )
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.total = total_steps(preset, len(source))
        shard = (self.cluster.rank, self.cluster.world) if self.cluster.active else None
        objective: nn.Module = Objective(self.model, preset, len(source), self.critic, shard, self.bf16)
        if self.cluster.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            objective = DistributedDataParallel(objective, device_ids=ids)
        self.objective = objective
        labels = labels_of(source) if self.kind.labelled else None
        self._labels = None if labels is None else labels.to(device)  # resident, like the data order

    @classmethod
    def create(
        cls, preset: Preset, source: ImageSource, device: torch.device, cluster: Cluster | None = None
    ) -> Stepper:
        """Steps of a fresh run of `preset` (see `builder.build_training`)."""
        return cls(preset, build_training(preset, device), source, device, cluster)

    def __call__(self, index: int, mark: Mark | None = None) -> tuple[LossTerms, dict[str, Tensor]]:
        """Run global step `index` (0-based; the optimiser step number is index + 1)."""
        mark = mark or (lambda phase: None)
        rows, x, other = self.batches(index)
        labels = None if self._labels is None else self._labels[rows]
        mark("data")
        apply_learning_rate(self.optimizer.param_groups, self.preset, index + 1, self.total)
        terms, latent = vae_step(self.objective, self.optimizer, x, labels, index + 1, self.noise, mark)
        extra = dict(terms.extra)
        if self.critic is not None:
            extra["critic_loss"] = critic_step(
                self.model, self.critic, self.preset, latent, labels, self.noise, other
            )
            mark("critic")
        return terms, extra

    # The trainer drives a single run and a stack of runs (`stacking.stack_steps`) through these.
    count = 1
    engine = "single"

    def step_members(self, index: int, mark: Mark | None = None) -> list[tuple[LossTerms, dict[str, Tensor]]]:
        return [self(index, mark)]

    def member_model(self, member: int) -> JointVAE:
        return self.model

    def restore(self, states: list[Resumed]) -> None:
        """Continue from a checkpoint (a list of one, as the steps of a stack take one per member)."""
        (state,) = states
        self.model.load_state_dict(state.weights)
        self.optimizer.load_state_dict(state.optimizer)
        if state.noise is not None:
            self.noise.set_state(state.noise)
        if self.critic is not None and state.critic is not None:
            self.critic.load_state_dict(state.critic)

    @property
    def noises(self) -> list[torch.Generator]:
        return [self.noise]

    def close(self) -> None:
        """Nothing to release (the concurrent steps hold threads)."""

    def member_state(self, member: int) -> MemberState:
        weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        critic = self.critic.state_dict() if self.critic is not None else None
        return MemberState(weights, self.optimizer.state_dict(), self.noise, critic)
