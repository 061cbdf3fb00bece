"""beta-VAE with a controlled capacity (Burgess et al. 2017): one capacity on the total KL, raised linearly."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from jvae.base.sections import CapacitySchedule, LossBase
from jvae.kinds import Kind
from jvae.modeling.losses import LossInputs, LossTerms


class CCBetaVAELoss(LossBase):
    kind: Literal["cc-beta-vae"] = Field(title="cc-beta-vae (Burgess 2017): one capacity on the total KL")
    continuous_capacity: CapacitySchedule = Field(title="C: capacity of the whole KL, every latent together")


def cc_beta_vae_loss(config: CCBetaVAELoss, batch: LossInputs) -> LossTerms:
    recon, kl_cont, kl_disc = batch.terms(config)
    c = config.continuous_capacity.capacity(batch.step)
    weight = config.continuous_capacity.weight(batch.step)
    loss = recon + weight * (kl_cont.sum() + kl_disc.sum() - c).abs()
    return LossTerms(loss, recon, kl_cont, kl_disc, c, 0.0)


KIND = Kind("cc-beta-vae", CCBetaVAELoss, cc_beta_vae_loss)
