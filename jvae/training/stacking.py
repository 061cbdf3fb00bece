"""K models of one architecture trained as one computation: every weight gains a leading model axis
(`jvae.modeling.stacked_network`).

A study trains the same network many times (seeds, a grid of beta or gamma). One small model's step leaves a
GPU idle, paying a kernel launch per operation for little arithmetic; here (the grouped engine) each layer
runs once for all K models, as a grouped convolution (K groups) or a batched matrix product. On a CPU with
one thread (the kernels engine) each model keeps jvae's own CPU kernels on its slice of the weights and only
the optimiser step is shared; a multi-core CPU runs the models' own steps side by side instead
(`jvae.training.concurrent`). `stack_steps` chooses.

Nothing else is shared. Each model has its own initialisation (its seed), data order, sampling noise, loss
section (its own beta, gamma or capacities) and optimiser state: the summed loss gives slice k the gradient
of model k's loss alone, and `StackedAdam` updates slice k as model k's own Adam would. `member_state` cuts a
model's weights and optimiser state out of the stack in the layout a single run saves, so each model's
checkpoint is a single run's checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from jvae import fast
from jvae.data.sources import ImageSource
from jvae.fast.stacked_adam import StackedAdam
from jvae.fast.stacked_layers import StackedNetwork
from jvae.kinds import kind_of
from jvae.modeling.augment import jittered
from jvae.modeling.builder import build_training
from jvae.modeling.losses import LossInputs, LossTerms
from jvae.modeling.model import JointVAE, Posterior
from jvae.modeling.presets import Preset
from jvae.modeling.schedules import temperature, total_steps
from jvae.modeling.stacked_network import FunctionalStack, StackedWeights
from jvae.runs.runplan import stackable
from jvae.training.steps import Batches, Mark, MemberState, Resumed, apply_learning_rate, gradient_scale

if TYPE_CHECKING:
    from jvae.training.concurrent import ConcurrentSteps


class StackedStepper:
    """Runs global step k of K runs at once: each model's own k-th batch, one stacked VAE update.

    It offers what the trainer asks of `steps.Stepper` for each member: its model, its state to save, and
    restoring a member from its checkpoint.
    """

    def __init__(
        self, presets: list[Preset], source: ImageSource, device: torch.device, grouped: bool | None = None
    ) -> None:
        """`grouped`: grouped convolutions and batched products (the default on a GPU) or each model's own
        kernels (the default on the CPU)."""
        self.presets, self.source, self.device = presets, source, device
        self.count = len(presets)
        grouped = device.type != "cpu" if grouped is None else grouped
        self.engine = "grouped" if grouped else "kernels"
        # Each model initialised, laid out and seeded exactly as its single run is.
        trainings = [build_training(preset, device) for preset in presets]
        self._members = [training.model for training in trainings]  # reloaded from the stack when asked for
        self.noises = [training.noise for training in trainings]
        self.bf16 = trainings[0].bf16
        network = StackedNetwork if fast.enabled() else FunctionalStack
        self.network: StackedWeights = network(self._members, grouped)
        self.optimizer = StackedAdam(
            [self.network.weight(name) for name in self.network.names], presets[0].train.lr, fast.enabled()
        )
        self.batches = [Batches(source, device, preset, trainings[0].channels_last) for preset in presets]
        self.steps_per_epoch = self.batches[0].steps_per_epoch
        self.kinds = [kind_of(p.loss) for p in presets]
        self.total = total_steps(presets[0], len(source))
        self.scales = [gradient_scale(preset) for preset in presets]
        self.jitters = [preset.loss.jitter() for preset in presets]

    def step_members(self, index: int, mark: Mark | None = None) -> list[tuple[LossTerms, dict[str, Tensor]]]:
        """Run global step `index` (0-based) of every member; each member's terms, as a single run's."""
        mark = mark or (lambda phase: None)
        step = index + 1
        images = [batches(index)[1] for batches in self.batches]
        x = self.network.images(images)
        mark("data")
        apply_learning_rate(self.optimizer.param_groups, self.presets[0], step, self.total)
        network = self.network
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            posteriors = network.encode(x)
            latents = [
                posterior.sample(temperature(preset.model, step), noise)
                for posterior, preset, noise in zip(posteriors, self.presets, self.noises)
            ]
            logits = network.decode_logits(torch.stack(latents))
            moved: list[Posterior | None] = [None] * len(self.presets)
            if any(jitter is not None for jitter in self.jitters):
                # Every member's batch moves (the stack encodes them together); a member without a
                # consistency term draws nothing and reads nothing of it.
                copies = [
                    image if jitter is None else jittered(image, jitter, noise)
                    for image, jitter, noise in zip(images, self.jitters, self.noises)
                ]
                encoded = network.encode(network.images(copies))
                moved = [p if jitter is not None else None for p, jitter in zip(encoded, self.jitters)]
            results = []
            for k, preset in enumerate(self.presets):
                batch = LossInputs(
                    images[k],
                    posteriors[k],
                    latents[k],
                    step,
                    self._decoder(k, latents[k], logits[k]),
                    network.template.generic,
                    len(self.source),
                    None,
                    jittered=moved[k],
                )
                results.append(self.kinds[k].loss(preset.loss, batch))
        total = sum(
            (terms.loss if scale == 1.0 else terms.loss * scale) for terms, scale in zip(results, self.scales)
        )
        mark("forward")
        self.optimizer.zero_grad()
        total.backward()  # type: ignore[union-attr]
        mark("backward")
        self.optimizer.step()
        mark("optimizer")
        return [(terms, dict(terms.extra)) for terms in results]

    def _decoder(self, member: int, latent: Tensor, logits: Tensor) -> Callable[[Tensor], Tensor]:
        """Model `member`'s decoder as its loss sees it: its own sample is already decoded with the others;
        any other code (a kind that decodes parts of the code) is decoded by that model alone."""

        def decode(codes: Tensor) -> Tensor:
            if codes is latent:
                return logits
            return self.network.decode_logits(codes.unsqueeze(0), member)[0]

        return decode

    # ------------------------------------------------------------------------------- per member

    def member_model(self, member: int) -> JointVAE:
        """Model `member` as a single JointVAE holding its current weights (for evaluation and figures)."""
        model = self._members[member]
        model.load_state_dict(self.network.member_weights(member))
        return model

    def member_state(self, member: int) -> MemberState:
        """What a single run of this member would save: weights, Adam state, noise; in its own storage."""
        single = self.optimizer.member_state(member)
        weights = {k: v.cpu() for k, v in self.network.member_weights(member).items()}
        return MemberState(weights, single, self.noises[member], None)

    def restore(self, states: list[Resumed]) -> None:
        """Every member from its checkpoint."""
        for member, state in enumerate(states):
            self.network.load_member(member, state.weights)
            if state.noise is not None:
                self.noises[member].set_state(state.noise)
        self.optimizer.load_members([state.optimizer for state in states])

    def close(self) -> None:
        """Nothing to release (the concurrent steps hold threads)."""


ENGINES = ("grouped", "kernels", "concurrent")


def stack_steps(
    presets: list[Preset], source: ImageSource, device: torch.device, engine: str | None = None
) -> StackedStepper | ConcurrentSteps:
    """The steps of a stack of runs, computed the way that is fastest where they run (or as `engine` says):
    grouped: one grouped convolution or batched product per layer for all models (a GPU, where one launch
    for K models is what pays); concurrent: each model's own step, models side by side on the CPU's cores,
    each with one thread; kernels: each model's own kernels and one shared optimiser step, in one thread (a
    CPU process with one thread). The last two compute bit for bit what each run computes alone with the
    same number of threads per model."""
    stackable(presets)
    if engine is None:
        engine = (
            "grouped" if device.type != "cpu" else "concurrent" if torch.get_num_threads() > 1 else "kernels"
        )
    if engine == "concurrent":
        from jvae.training.concurrent import ConcurrentSteps

        return ConcurrentSteps(presets, source, device)
    if engine not in ENGINES:
        raise ValueError(f"unknown stacking engine {engine!r}; choose from {', '.join(ENGINES)}")
    return StackedStepper(presets, source, device, grouped=engine == "grouped")
