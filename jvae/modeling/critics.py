"""What every second network trained in alternation with the VAE shares: its own Adam optimiser, a frozen
mode for the VAE's step, and a checkpointable state. The networks themselves belong to their kinds
(`kinds/factor_vae.py`'s discriminator, `kinds/class_conditional.py`'s classifier).

The two steps must stay apart, which popular implementations get wrong: in the VAE step the critic is frozen
(`requires_grad` off), so the VAE loss leaves no gradient in it and the VAE optimiser, which does not hold its
parameters anyway, cannot move it; in the critic's step the codes are detached, so nothing flows into the
encoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from jvae.base.sections import ModelConfig
from jvae.modeling.model import JointVAE


def mlp(inputs: int, width: int, layers: int, outputs: int, slope: float) -> nn.Sequential:
    """`layers` fully connected layers of `width` units with leaky ReLU (`slope`) between them."""
    modules: list[nn.Module] = []
    for i in range(layers - 1):
        modules += [nn.Linear(inputs if i == 0 else width, width), nn.LeakyReLU(slope)]
    modules.append(nn.Linear(width if layers > 1 else inputs, outputs))
    return nn.Sequential(*modules)


@dataclass
class CriticInputs:
    """What a critic's own step reads."""

    model: JointVAE
    model_section: ModelConfig  # the preset's model section (a critic's step may sample codes)
    latent: Tensor  # (B, D + sum K) the VAE batch's sampled codes (detached by the critic)
    labels: Tensor | None  # (B,) class indices, where the dataset has them
    noise: torch.Generator
    other: Tensor | None = None  # a second batch of images, for kinds with `second_batch`


class Critic(Protocol):
    network: nn.Module

    def penalty(self, codes: Tensor, labels: Tensor | None = None) -> Tensor:
        """The term the VAE's loss adds, differentiable in `codes` only."""
        ...

    def train_step(self, inputs: CriticInputs) -> Tensor:
        """One update of the critic alone; returns its detached loss."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class CriticBase:
    """A network and its Adam optimiser, with the freezing and state handling every critic needs."""

    network: nn.Module
    optimizer: torch.optim.Optimizer

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Parameters that the VAE's backward pass must not reach."""
        flags = [p.requires_grad for p in self.network.parameters()]
        for p in self.network.parameters():
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in zip(self.network.parameters(), flags):
                p.requires_grad_(flag)

    def update(self, loss: Tensor) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        return {
            "network": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
