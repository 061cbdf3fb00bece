"""beta-VAE (Higgins et al. 2017): the KL weighted by beta > 1, trading reconstruction for factorised codes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from jvae.base.sections import LossBase
from jvae.kinds import Kind
from jvae.modeling.losses import LossInputs, LossTerms


class BetaVAELoss(LossBase):
    kind: Literal["beta-vae"] = Field(title="beta-vae (Higgins 2017): the KL term weighted by beta")
    beta: float = Field(ge=0, title="Weight of the KL term")


def beta_vae_loss(config: BetaVAELoss, batch: LossInputs) -> LossTerms:
    recon, kl_cont, kl_disc = batch.terms(config)
    loss = recon + config.beta * (kl_cont.sum() + kl_disc.sum())
    return LossTerms(loss, recon, kl_cont, kl_disc, 0.0, 0.0)


KIND = Kind("beta-vae", BetaVAELoss, beta_vae_loss)
