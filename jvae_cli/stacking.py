"""K models of one architecture trained as one computation: every weight gains a leading model axis.

A study trains the same network many times (seeds, a grid of beta or gamma). One small model's step leaves a
GPU idle, paying a kernel launch per operation for little arithmetic; here (the grouped engine) each layer
runs once for all K models, as a grouped convolution (K groups) or a batched matrix product. On a CPU with
one thread (the kernels engine) each model keeps jvae's own CPU kernels on its slice of the weights and only
the optimiser step is shared; a multi-core CPU runs the models' own steps side by side instead
(`jvae_cli.concurrent`). `stack_steps` chooses.

Nothing else is shared. Each model has its own initialisation (its seed), data order, sampling noise, loss
section (its own beta, gamma or capacities) and optimiser state: the summed loss gives slice k the gradient
of model k's loss alone, and `StackedAdam` updates slice k as model k's own Adam would. `member_state` cuts a
model's weights and optimiser state out of the stack in the layout a single run saves, so each model's
checkpoint is a single run's checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jvae_cli.builder import build_training
from jvae_cli.convolutions import DownConv, UpConv, down_convolution, up_convolution
from jvae_cli.data.sources import ImageSource
from jvae_cli.errors import PresetError
from jvae_cli.kinds import kind_of
from jvae_cli.losses import LossInputs, LossTerms
from jvae_cli.model import FEATURE_SIDE, JointVAE, Posterior
from jvae_cli.presets import Preset
from jvae_cli.schedules import temperature, total_steps
from jvae_cli.stacked_adam import StackedAdam, stack_like
from jvae_cli.steps import Batches, Mark, MemberState, Resumed, apply_learning_rate, gradient_scale

if TYPE_CHECKING:
    from jvae_cli.concurrent import ConcurrentSteps

Weights = dict[str, Tensor]


def _key(name: str) -> str:
    return name.replace(".", "__")  # a ParameterDict key may not contain dots


def _grid_to_rows(h: Tensor, models: int) -> Tensor:
    """(B, K*C, H, W) -> (K, B, C*H*W): each model's feature maps flattened as nn.Flatten does."""
    return h.reshape(h.shape[0], models, -1).transpose(0, 1)


Activation = Tensor | list[Tensor]


def _rows(h: Activation) -> Tensor:
    """(K, B, F) rows for batched matrix products, from either layout of images."""
    if isinstance(h, list):
        return torch.stack([x.flatten(1) for x in h])
    return h


def _images(h: Tensor, channels: int, side: int, grouped: bool) -> Activation:
    """(K, B, C*side*side) rows as images: one grouped (B, K*C, side, side) tensor, or K (B, C, side, side)."""
    models, batch = h.shape[0], h.shape[1]
    if grouped:
        return h.transpose(0, 1).reshape(batch, models * channels, side, side)
    return [row.view(batch, channels, side, side) for row in h]


class StackedNetwork(nn.Module):
    """K JointVAE networks of one architecture, computed together.

    Activations between convolutions are (B, K*C, H, W), model k's channels in the k-th block, which is the
    layout grouped convolutions read; between linear layers they are (K, B, F) for batched matrix products.
    `names` keeps the single model's parameter order (a ParameterDict sorts its keys), which is the order an
    optimiser's saved state must follow to be a single run's.
    """

    def __init__(self, models: list[JointVAE], grouped: bool) -> None:
        super().__init__()
        self.grouped = grouped
        template = models[0]
        self.names = [name for name, _ in template.named_parameters()]
        found = [dict(m.named_parameters()) for m in models]
        self.stack = nn.ParameterDict(
            {_key(name): nn.Parameter(stack_like([f[name].detach() for f in found])) for name in self.names}
        )
        self._template = [template]  # a list keeps it out of this module's parameters

    @property
    def template(self) -> JointVAE:
        return self._template[0]

    def weight(self, name: str) -> Tensor:
        return self.stack[_key(name)]

    # ------------------------------------------------------------------------------- the layers, stacked

    def _run(
        self, module: nn.Module, prefix: str, h: Activation, weights: Callable[[str], Tensor]
    ) -> Activation:
        """`module` of the single network applied to all K models' activations `h`.

        Between convolutions `h` is either one (B, K*C, H, W) tensor for grouped convolutions (on a GPU,
        where one launch for K models is what pays) or a list of K (B, C, H, W) images (on the CPU, where
        grouped convolutions are no faster than K of jvae's own convolution kernels, and those compute
        exactly what a single run computes).
        """
        models = weights(self.names[0]).shape[0]
        if isinstance(module, nn.Sequential):
            for index, child in enumerate(module):
                h = self._run(child, f"{prefix}.{index}", h, weights)
            return h
        if isinstance(module, (DownConv, UpConv)):
            w = weights(f"{prefix}.weight")  # (K, out, in, kh, kw) or (K, in, out, kh, kw)
            b = weights(f"{prefix}.bias") if module.bias is not None else None
            if isinstance(h, list):
                run = down_convolution if isinstance(module, DownConv) else up_convolution
                biases = b.unbind(0) if b is not None else (None,) * models
                return [run(module, x, wk, bk) for x, wk, bk in zip(h, w.unbind(0), biases)]  # type: ignore[arg-type]
            flat, bias = w.reshape(-1, *w.shape[2:]), b.reshape(-1) if b is not None else None
            if isinstance(module, DownConv):
                return F.conv2d(h, flat, bias, module.stride, module.padding, module.dilation, models)
            padding = cast(tuple[int, ...], module.padding)  # a transposed convolution's is never a string
            return F.conv_transpose2d(
                h, flat, bias, module.stride, padding, module.output_padding, models, module.dilation
            )
        if isinstance(module, nn.Linear):
            return self._linear(prefix, _rows(h), weights, module.bias is not None)
        if isinstance(module, nn.ReLU):
            if isinstance(h, list):
                return [F.relu(x, inplace=module.inplace) for x in h]
            return F.relu(h, inplace=module.inplace)
        if isinstance(module, nn.Tanh):
            return torch.tanh(_rows(h))
        if isinstance(module, nn.Flatten):
            return _grid_to_rows(h, models) if isinstance(h, Tensor) and h.dim() == 4 else _rows(h)
        if isinstance(module, nn.Unflatten):
            channels, side = int(module.unflattened_size[0]), int(module.unflattened_size[-1])
            return _images(_rows(h), channels, side, grouped=self.grouped)
        raise TypeError(f"no stacked form of {type(module).__name__}")

    def _linear(self, prefix: str, h: Tensor, weights: Callable[[str], Tensor], bias: bool) -> Tensor:
        """A linear layer of K models on (K, B, F): one batched product on a GPU; on the CPU each model's own
        product, the kernel a single run calls (so a stacked model computes bit for bit what it would alone;
        the batched product rounds differently and is no faster at these sizes here)."""
        w = weights(f"{prefix}.weight")  # (K, out, in)
        b = weights(f"{prefix}.bias") if bias else None
        if not self.grouped:
            biases = b.unbind(0) if b is not None else (None,) * w.shape[0]
            return torch.stack([F.linear(x, wk, bk) for x, wk, bk in zip(h.unbind(0), w.unbind(0), biases)])
        if b is None:
            return torch.bmm(h, w.transpose(1, 2))
        return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))

    def _weights(self, member: int | None) -> Callable[[str], Tensor]:
        if member is None:
            return self.weight
        return lambda name: self.weight(name)[member : member + 1]

    # ------------------------------------------------------------------------------- the model, stacked

    def images(self, batches: list[Tensor]) -> Activation:
        """Each model's batch (B, C, H, W) in the layout the first convolution reads."""
        if self.grouped:
            return torch.stack(batches, dim=1).flatten(1, 2)  # (B, K*C, H, W)
        return batches

    def encode(self, x: Activation) -> list[Posterior]:
        """Each model's posterior of its own batch (`images`' layout)."""
        template, weights = self.template, self.weight
        hidden = _rows(self._run(template.encoder, "encoder", x, weights))  # (K, B, hidden)
        models, batch = hidden.shape[0], hidden.shape[1]
        if template.continuous:
            mean = self._linear("mean_head", hidden, weights, True)
            logvar = self._linear("logvar_head", hidden, weights, True)
        else:
            mean = logvar = hidden.new_zeros(models, batch, 0)
        logits = [
            self._linear(f"discrete_heads.{i}", hidden, weights, True) for i in range(len(template.discrete))
        ]
        return [Posterior(mean[k], logvar[k], [logit[k] for logit in logits]) for k in range(models)]

    def decode_logits(self, latent: Tensor, member: int | None = None) -> list[Tensor]:
        """Each model's (B, C, H, W) reconstruction logits of its codes in (K, B, L); with `member`, that
        model's alone for its codes (1, B, L)."""
        template, weights = self.template, self._weights(member)
        features = self._run(template.latent_to_features, "latent_to_features", latent, weights)
        if not template.mlp:
            rows = _rows(features)
            features = _images(rows, rows.shape[-1] // FEATURE_SIDE**2, FEATURE_SIDE, self.grouped)
        out = self._run(template.decoder, "decoder", features, weights)
        if isinstance(out, list):
            return out
        batch, side = out.shape[0], out.shape[-1]
        return list(out.view(batch, latent.shape[0], template.channels, side, side).unbind(1))

    # ------------------------------------------------------------------------------- one model out of K

    def member_weights(self, member: int) -> Weights:
        """Model `member`'s state dict, as the single model's `state_dict()` names it (own storage)."""
        return {name: self.weight(name)[member].detach().clone() for name in self.names}

    def load_member(self, member: int, weights: Weights) -> None:
        with torch.no_grad():
            for name in self.names:
                self.weight(name)[member].copy_(weights[name])


def stackable(presets: list[Preset]) -> None:
    """Refuse presets that cannot train as one stack: they may differ in the seed and the loss section's
    values, nothing else."""
    first = presets[0]
    kind = kind_of(first.loss)
    if kind.critic is not None or kind.labelled or first.model.classes:
        raise PresetError(
            f"{kind.name} trains a second network (its critic or classifier) beside each model and cannot "
            "be stacked; train its seeds one at a time (jvae sweep)"
        )

    def shape(preset: Preset) -> dict[str, Any]:
        body = preset.model_dump(mode="json")
        body["train"] = {k: v for k, v in body["train"].items() if k != "seed"}
        body["loss"] = {"kind": body["loss"]["kind"]}
        return body

    for preset in presets[1:]:
        if shape(preset) != shape(first):
            raise PresetError(
                "stacked models may differ only in train.seed and the values of the loss section "
                f"(kind {first.loss.kind}); the data, model and other train settings must match"
            )


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
        self.network = StackedNetwork(self._members, grouped)
        self.optimizer = StackedAdam(
            [self.network.weight(name) for name in self.network.names], presets[0].train.lr
        )
        self.batches = [Batches(source, device, preset, trainings[0].channels_last) for preset in presets]
        self.steps_per_epoch = self.batches[0].steps_per_epoch
        self.kinds = [kind_of(p.loss) for p in presets]
        self.total = total_steps(presets[0], len(source))
        self.scales = [gradient_scale(preset) for preset in presets]

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
        from jvae_cli.concurrent import ConcurrentSteps

        return ConcurrentSteps(presets, source, device)
    if engine not in ENGINES:
        raise ValueError(f"unknown stacking engine {engine!r}; choose from {', '.join(ENGINES)}")
    return StackedStepper(presets, source, device, grouped=engine == "grouped")
