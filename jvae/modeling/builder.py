"""Live objects from a preset: the model, its optimiser, sampling noise, the kind's critic, the arithmetic and
the memory layout, built in one place so that training, benchmarks and checkpoint loading agree on them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from jvae.base.devices import use_bf16, use_bf16_bodies
from jvae.fast import swap_in
from jvae.kinds import build_critic
from jvae.modeling.critics import Critic
from jvae.modeling.initialisation import as_pytorch04
from jvae.modeling.model import JointVAE
from jvae.modeling.presets import Preset


def build_model(preset: Preset) -> JointVAE:
    """The untrained network `preset` describes (weights from the global torch seed, drawn as
    model.init says), on jvae's fast kernels unless $JVAE_STOCK is set."""
    model = JointVAE(
        image_size=preset.data.image_size,
        channels=preset.data.channels,
        continuous=preset.model.continuous,
        discrete=preset.model.discrete,
        hidden=preset.model.hidden,
        mlp=preset.model.architecture == "mlp",
        classes=preset.model.classes,
        generic=preset.model.generic,
    )
    return swap_in(as_pytorch04(model) if preset.model.init == "pytorch-0.4" else model)


@dataclass
class Training:
    """Everything a run updates or draws from, besides the data."""

    model: JointVAE
    optimizer: torch.optim.Optimizer
    noise: torch.Generator  # sampling noise (reparameterisation, Gumbel), seeded apart from initialisation
    critic: Critic | None
    bf16: bool  # bf16 autocast in the step
    channels_last: bool  # convolutions in channels-last layout


def build_training(preset: Preset, device: torch.device) -> Training:
    """A fresh model (seeded), its fused Adam and noise generator, laid out and computing as `jvae train`
    does: channels-last convolutions and bf16 autocast where `train.precision` asks for it."""
    torch.manual_seed(preset.train.seed)
    model = build_model(preset).to(device)
    channels_last = preset.model.architecture != "mlp"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=preset.train.lr, fused=True)
    noise = torch.Generator(device=device).manual_seed(preset.train.seed + 1)
    critic = build_critic(preset.loss, preset.model, device)
    bf16 = use_bf16(preset.train.precision, device)
    model.bf16_bodies = use_bf16_bodies(preset.train.precision, device)
    return Training(model, optimizer, noise, critic, bf16, channels_last)
