"""The plain VAE (Kingma & Welling 2014): the negative ELBO, the baseline every other kind departs from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from jvae.base.sections import LossBase
from jvae.kinds import Kind
from jvae.modeling.losses import LossInputs, LossTerms


class VAELoss(LossBase):
    kind: Literal["vae"] = Field(title="vae: reconstruction plus the whole KL, weight 1")


def vae_loss(config: VAELoss, batch: LossInputs) -> LossTerms:
    recon, kl_cont, kl_disc = batch.terms(config)
    return LossTerms(recon + (kl_cont.sum() + kl_disc.sum()), recon, kl_cont, kl_disc, 0.0, 0.0)


KIND = Kind("vae", VAELoss, vae_loss)
