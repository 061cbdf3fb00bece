"""DIP-VAE (Kumar, Sattigeri & Balakrishnan 2018): the ELBO plus a penalty pushing a covariance of the codes
towards the identity, off-diagonal entries weighted by lambda_od and diagonal ones by lambda_d.

DIP-VAE-I penalises the covariance of the encoder means over the batch, Cov_p(x)[mu(x)]; DIP-VAE-II that of
the aggregate posterior, E_p(x)[Sigma(x)] + Cov_p(x)[mu(x)]. Both act on the continuous units; discrete
variables, if a preset adds any, keep their KL with weight 1. Two kinds, one module: they differ only in
which covariance they penalise.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from jvae.base.sections import LossBase
from jvae.kinds import Kind
from jvae.modeling.losses import LossInputs, LossTerms


class DIPVAEILoss(LossBase):
    kind: Literal["dip-vae-i"] = Field(
        title="dip-vae-i (Kumar 2018): the covariance of the encoder means pushed towards the identity"
    )
    lambda_od: float = Field(ge=0, title="Weight of the squared off-diagonal covariance entries")
    lambda_d: float = Field(ge=0, title="Weight of the squared distance of the diagonal entries from 1")


class DIPVAEIILoss(LossBase):
    kind: Literal["dip-vae-ii"] = Field(
        title="dip-vae-ii (Kumar 2018): the covariance of the aggregate posterior pushed towards the identity"
    )
    lambda_od: float = Field(ge=0, title="Weight of the squared off-diagonal covariance entries")
    lambda_d: float = Field(ge=0, title="Weight of the squared distance of the diagonal entries from 1")


def covariance_of_means(mean: Tensor) -> Tensor:
    """Cov_p(x)[mu(x)] over the batch, (D, D): E[mu mu^T] - E[mu] E[mu]^T (the biased estimate)."""
    centred = mean - mean.mean(dim=0, keepdim=True)
    return centred.T @ centred / mean.shape[0]


def aggregate_covariance(mean: Tensor, logvar: Tensor) -> Tensor:
    """E_p(x)[Sigma(x)] + Cov_p(x)[mu(x)], (D, D): the covariance of q(z) over the batch."""
    return torch.diag(logvar.exp().mean(dim=0)) + covariance_of_means(mean)


def dip_penalty(covariance: Tensor, lambda_od: float, lambda_d: float) -> Tensor:
    """lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2."""
    diagonal = torch.diagonal(covariance)
    off_diagonal = covariance - torch.diag(diagonal)
    return lambda_od * off_diagonal.pow(2).sum() + lambda_d * (diagonal - 1).pow(2).sum()


def _loss(config: DIPVAEILoss | DIPVAEIILoss, batch: LossInputs, covariance: Tensor) -> LossTerms:
    recon, kl_cont, kl_disc = batch.terms(config)
    penalty = dip_penalty(covariance, config.lambda_od, config.lambda_d)
    loss = recon + kl_cont.sum() + kl_disc.sum() + penalty
    return LossTerms(loss, recon, kl_cont, kl_disc, 0.0, 0.0, {"dip_penalty": penalty})


def dip_vae_i_loss(config: DIPVAEILoss, batch: LossInputs) -> LossTerms:
    return _loss(config, batch, covariance_of_means(batch.posterior.mean.float()))


def dip_vae_ii_loss(config: DIPVAEIILoss, batch: LossInputs) -> LossTerms:
    posterior = batch.posterior
    return _loss(config, batch, aggregate_covariance(posterior.mean.float(), posterior.logvar.float()))


KINDS = (Kind("dip-vae-i", DIPVAEILoss, dip_vae_i_loss), Kind("dip-vae-ii", DIPVAEIILoss, dip_vae_ii_loss))
