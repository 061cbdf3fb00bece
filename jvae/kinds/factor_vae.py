"""FactorVAE (Kim & Mnih 2018): the ELBO plus gamma times the total correlation of the codes, estimated by a
discriminator that tells codes q(z) from codes whose dimensions were shuffled across the batch (samples of
prod_d q(z_d)). The discriminator trains in its own step on a second, independently ordered batch."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from jvae.base.sections import LossBase, ModelConfig
from jvae.kinds import Kind
from jvae.modeling.critics import CriticBase, CriticInputs, mlp
from jvae.modeling.losses import LossInputs, LossTerms

DISCRIMINATOR_WIDTH = 1000  # Kim & Mnih: six fully connected layers of 1000 units, leaky ReLU 0.2
DISCRIMINATOR_LAYERS = 6
DISCRIMINATOR_BETAS = (0.5, 0.9)


class FactorVAELoss(LossBase):
    kind: Literal["factor-vae"] = Field(
        title="factor-vae (Kim & Mnih 2018): total correlation from a discriminator"
    )
    gamma: float = Field(ge=0, title="Weight of the total correlation")
    adversary_lr: float = Field(1e-4, gt=0, title="Adam learning rate of the discriminator")


def permute_dims(codes: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Shuffle each column independently across the batch: samples of the product of the marginals."""
    keys = torch.rand(codes.shape, generator=generator, device=codes.device)
    return codes.gather(0, keys.argsort(dim=0))


class TCDiscriminator(CriticBase):
    """The discriminator; its logit is log D/(1 - D), so its batch mean estimates the total correlation."""

    def __init__(self, units: int, lr: float, device: torch.device | str = "cpu") -> None:
        self.network = mlp(units, DISCRIMINATOR_WIDTH, DISCRIMINATOR_LAYERS, 1, 0.2).to(device)
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
        return self.update(loss)

    def train_step(self, inputs: CriticInputs) -> Tensor:
        """Compare the VAE batch's codes with the shuffled codes of the second batch, encoded without
        gradient."""
        if inputs.other is None:
            raise ValueError("factor-vae's discriminator step needs a second batch")
        model = inputs.model
        with torch.no_grad():
            other = model.encode(inputs.other).sample(inputs.model_section.temperature, inputs.noise)
        units = model.continuous
        return self.step(inputs.latent[:, :units], other[:, :units], inputs.noise)


def factor_vae_loss(config: FactorVAELoss, batch: LossInputs) -> LossTerms:
    if batch.critic is None:
        raise ValueError("factor-vae's loss needs its discriminator")
    recon, kl_cont, kl_disc = batch.terms(config)
    tc = batch.critic.penalty(batch.latent[:, : batch.continuous])
    loss = recon + kl_cont.sum() + kl_disc.sum() + config.gamma * tc
    return LossTerms(loss, recon, kl_cont, kl_disc, 0.0, 0.0, {"tc": tc})


def build_discriminator(
    loss: FactorVAELoss, model: ModelConfig, device: torch.device | str
) -> TCDiscriminator:
    return TCDiscriminator(model.continuous, loss.adversary_lr, device)


KIND = Kind(
    "factor-vae",
    FactorVAELoss,
    factor_vae_loss,
    critic=build_discriminator,
    second_batch=True,
    multiprocess=False,
)
