"""Second networks trained in alternation with the VAE, each with its own Adam optimiser.

FactorVAE (Kim & Mnih 2018) estimates the total correlation of the codes with a discriminator that tells codes
q(z) from codes whose dimensions were shuffled across the batch (samples of prod_d q(z_d)). The class-conditional
VAE (Kondamudi & Balasubramanian 2019) keeps the label out of its generic units with a classifier.

The two steps must stay apart, which popular implementations get wrong: in the VAE step the critic is frozen
(`requires_grad` off), so the VAE loss leaves no gradient in it and the VAE optimiser, which does not hold its
parameters anyway, cannot move it; in the critic's step the codes are detached, so nothing flows into the
encoder.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jvae_cli.presets import Preset

DISCRIMINATOR_WIDTH = 1000  # Kim & Mnih: six fully connected layers of 1000 units, leaky ReLU 0.2
DISCRIMINATOR_LAYERS = 6
DISCRIMINATOR_BETAS = (0.5, 0.9)
CLASSIFIER_WIDTH = 256


def _mlp(inputs: int, width: int, layers: int, outputs: int, slope: float) -> nn.Sequential:
    modules: list[nn.Module] = []
    for i in range(layers - 1):
        modules += [nn.Linear(inputs if i == 0 else width, width), nn.LeakyReLU(slope)]
    modules.append(nn.Linear(width if layers > 1 else inputs, outputs))
    return nn.Sequential(*modules)


def permute_dims(codes: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Shuffle each column independently across the batch: samples of the product of the marginals."""
    keys = torch.rand(codes.shape, generator=generator, device=codes.device)
    return codes.gather(0, keys.argsort(dim=0))


class _Critic:
    network: nn.Module
    optimizer: torch.optim.Optimizer

    @contextmanager
    def frozen(self):  # noqa: ANN201 - a context manager
        """Parameters that the VAE's backward pass must not reach."""
        flags = [p.requires_grad for p in self.network.parameters()]
        for p in self.network.parameters():
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in zip(self.network.parameters(), flags):
                p.requires_grad_(flag)

    def _update(self, loss: Tensor) -> Tensor:
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


class TCDiscriminator(_Critic):
    """FactorVAE's discriminator; its logit is log D/(1 - D), so its batch mean estimates the total correlation."""

    def __init__(self, units: int, lr: float, device: torch.device | str = "cpu") -> None:
        self.network = _mlp(units, DISCRIMINATOR_WIDTH, DISCRIMINATOR_LAYERS, 1, 0.2).to(device)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=lr, betas=DISCRIMINATOR_BETAS)

    def penalty(self, codes: Tensor, labels: Tensor | None = None) -> Tensor:
        with self.frozen():
            return self.network(codes.float()).mean()

    def step(self, codes: Tensor, other_codes: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One update telling `codes` (label 1) from `other_codes` with shuffled dimensions (label 0)."""
        real = self.network(codes.detach().float()).squeeze(1)
        shuffled = self.network(permute_dims(other_codes.detach().float(), generator)).squeeze(1)
        loss = 0.5 * (
            F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(shuffled, torch.zeros_like(shuffled))
        )
        return self._update(loss)


class LabelClassifier(_Critic):
    """The class-conditional model's classifier h(.): per-class sigmoid outputs, the paper's equation 5."""

    def __init__(self, units: int, classes: int, lr: float, device: torch.device | str = "cpu") -> None:
        self.classes = classes
        self.network = _mlp(units, CLASSIFIER_WIDTH, 2, classes, 0.0).to(device)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=lr)

    def bce(self, codes: Tensor, labels: Tensor) -> Tensor:
        """Binary cross-entropy of every class's sigmoid against the one-hot label, summed over classes."""
        target = F.one_hot(labels.to(codes.device).long(), self.classes).float()
        logits = self.network(codes.float())
        return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / codes.shape[0]

    def penalty(self, codes: Tensor, labels: Tensor | None = None) -> Tensor:
        assert labels is not None
        with self.frozen():
            return self.bce(codes, labels)

    def step(self, codes: Tensor, labels: Tensor) -> Tensor:
        return self._update(self.bce(codes.detach(), labels))


Critic = TCDiscriminator | LabelClassifier


def build_critic(preset: Preset, device: torch.device | str) -> Critic | None:
    """The second network `preset.loss.kind` trains, or None."""
    loss, model = preset.loss, preset.model
    if loss.kind == "factor-vae":
        return TCDiscriminator(model.continuous, loss.adversary_learning_rate, device)
    if loss.kind == "class-conditional":
        return LabelClassifier(model.generic, model.classes, loss.adversary_learning_rate, device)
    return None
