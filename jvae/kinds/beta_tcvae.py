"""beta-TCVAE (Chen et al. 2018): the KL split into index-code mutual information, total correlation and
dimension-wise KL, each with its own weight; the aggregate posterior is estimated from the batch."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from jvae.base.sections import LossBase
from jvae.kinds import Kind
from jvae.modeling.losses import LossInputs, LossTerms


class BetaTCVAELoss(LossBase):
    kind: Literal["beta-tcvae"] = Field(
        title="beta-tcvae (Chen 2018): KL split into index-code MI, total correlation, dimension-wise KL"
    )
    alpha: float = Field(ge=0, title="Weight of the index-code mutual information")
    beta: float = Field(ge=0, title="Weight of the total correlation")
    gamma: float = Field(ge=0, title="Weight of the dimension-wise KL")
    estimator: Literal["mws", "mss"] = Field(
        "mws",
        title="How log q(z) is estimated from a batch: minibatch-weighted (mws) or the unbiased "
        "minibatch-stratified one (mss)",
    )


def log_normal(z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mean, exp(logvar)) elementwise."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mean).pow(2) * torch.exp(-logvar))


def pair_log_weights(
    batch: int, dataset_size: int, estimator: str, device: torch.device, dtype: torch.dtype = torch.float32
) -> Tensor:
    """log w[i, j]: the weight of q(z_i | x_j) in the batch estimate of q(z_i) = 1/N sum_n q(z_i | x_n).

    mws (minibatch-weighted sampling, Chen 2018) weighs every pair 1/(N M). mss weighs the image z_i came from
    by 1/N and each of the M-1 others by (N-1)/(N(M-1)): those others are a uniform draw without replacement
    from the N-1 remaining images, so the estimate of q(z_i) is unbiased, and exact when the batch is the
    whole dataset.
    """
    n = float(dataset_size)
    if estimator == "mws":
        return torch.full((batch, batch), -math.log(n * batch), device=device, dtype=dtype)
    if estimator != "mss":
        raise ValueError(f"unknown estimator {estimator!r}")
    other = math.log((n - 1) / (n * (batch - 1))) if batch > 1 else -math.inf
    weights = torch.full((batch, batch), other, device=device, dtype=dtype)
    weights.fill_diagonal_(-math.log(n))
    return weights


def tc_decomposition(
    z: Tensor, mean: Tensor, logvar: Tensor, dataset_size: int, estimator: str = "mws"
) -> tuple[Tensor, Tensor, Tensor]:
    """Index-code MI, total correlation and dimension-wise KL of the Gaussian units, batch estimates.

    With log q(z) and log prod_d q(z_d) estimated from the batch's pairs, the three terms are the batch means of
    log q(z|x) - log q(z), log q(z) - sum_d log q(z_d), and sum_d log q(z_d) - log p(z); they sum to the
    sampled KL(q(z|x) || p(z)).
    """
    log_w = pair_log_weights(z.shape[0], dataset_size, estimator, z.device, z.dtype)  # (M, M)
    pairs = log_normal(z.unsqueeze(1), mean.unsqueeze(0), logvar.unsqueeze(0))  # (M, M, D): [i, j, d]
    log_qz_x = log_normal(z, mean, logvar).sum(1)  # (M,)
    log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    log_qz = torch.logsumexp(log_w + pairs.sum(2), dim=1)
    log_prod_qzd = torch.logsumexp(log_w.unsqueeze(2) + pairs, dim=1).sum(1)
    return (log_qz_x - log_qz).mean(), (log_qz - log_prod_qzd).mean(), (log_prod_qzd - log_pz).mean()


def beta_tcvae_loss(config: BetaTCVAELoss, batch: LossInputs) -> LossTerms:
    """recon + alpha MI + beta TC + gamma dimension-wise KL of the Gaussian units.

    Discrete variables, if the model has any, stay out of the decomposition: their KL to the uniform prior is
    added with weight 1, as in the plain ELBO.
    """
    if batch.dataset_size is None:
        raise ValueError("beta-tcvae needs the dataset size")
    recon, kl_cont, kl_disc = batch.terms(config)
    posterior, d = batch.posterior, batch.continuous
    mi, tc, dwkl = tc_decomposition(
        batch.latent[:, :d].float(),
        posterior.mean.float(),
        posterior.logvar.float(),
        batch.dataset_size,
        config.estimator,
    )
    loss = recon + config.alpha * mi + config.beta * tc + config.gamma * dwkl + kl_disc.sum()
    return LossTerms(loss, recon, kl_cont, kl_disc, 0.0, 0.0, {"mi": mi, "tc": tc, "dwkl": dwkl})


KIND = Kind("beta-tcvae", BetaTCVAELoss, beta_tcvae_loss)
