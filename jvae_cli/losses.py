"""The JointVAE objective (Dupont 2018, equation 7) as plain functions, so evaluation can use it without a trainer.

loss = recon + gamma_z |KL(q(z|x) || N(0, I)) - C_z| + gamma_c |KL(q(c|x) || Uniform) - C_c|

Each capacity C rises linearly from `start` to `stop` over `steps` optimiser steps (the first batch is step 1)
and the discrete one is clipped at sum_i log K_i, the largest KL a set of categoricals can have from uniform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from jvae_cli.model import JointVAE, Posterior
from jvae_cli.presets import CapacitySchedule, LossConfig

# ----------------------------------------------------------------------------------------------- terms


def capacity(schedule: CapacitySchedule, step: int, ceiling: float = math.inf) -> float:
    """C at `step`: linear from start to stop over schedule.steps, then held; never above `ceiling`."""
    fraction = min(max(step, 0) / schedule.steps, 1.0)
    return min(schedule.start + (schedule.stop - schedule.start) * fraction, ceiling)


def kl_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per example and unit, (B, D)."""
    return -0.5 * (1 + logvar - mean.pow(2) - logvar.exp())


def kl_uniform_categorical(logits: Tensor) -> Tensor:
    """KL(Categorical(softmax(logits)) || Uniform(K)) = log K - H, per example, (B,)."""
    log_probs = F.log_softmax(logits, dim=-1)
    return math.log(logits.shape[-1]) + (log_probs.exp() * log_probs).sum(dim=-1)


def reconstruction(logits: Tensor, target: Tensor, mode: str = "bce-sum") -> Tensor:
    """Bernoulli negative log-likelihood of the batch, averaged over images.

    bce-sum sums the pixel BCE over C*H*W; bce-official is the official code's mean BCE times H*W, which is
    the same for greyscale and the per-image sum divided by C for RGB (kept to reproduce its CelebA runs).
    """
    per_pixel_sum = F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
    batch = target.shape[0]
    if mode == "bce-sum":
        return per_pixel_sum / batch
    if mode == "bce-official":
        return per_pixel_sum / (batch * target.shape[1])
    raise ValueError(f"unknown reconstruction mode {mode!r}")


# ----------------------------------------------------------------------------------------------- objective


@dataclass
class LossTerms:
    """Every term of one evaluation of the objective; tensors stay on the device until someone logs them."""

    loss: Tensor  # ()
    recon: Tensor  # ()
    kl_cont: Tensor  # (D,) batch-mean KL of each continuous unit
    kl_disc: Tensor  # (V,) batch-mean KL of each discrete variable
    capacity_cont: float
    capacity_disc: float

    @property
    def kl_cont_total(self) -> Tensor:
        return self.kl_cont.sum()

    @property
    def kl_disc_total(self) -> Tensor:
        return self.kl_disc.sum()


def objective(
    recon_logits: Tensor, target: Tensor, posterior: Posterior, step: int, config: LossConfig
) -> LossTerms:
    """The loss `config.kind` names, at optimiser step `step` (1 for the first batch)."""
    if config.kind == "jointvae":
        return jointvae_loss(recon_logits, target, posterior, step, config)
    recon, kl_cont, kl_disc = _terms(recon_logits, target, posterior, config.reconstruction)
    kl_total = kl_cont.sum() + kl_disc.sum()
    if config.kind == "vae":
        return LossTerms(recon + kl_total, recon, kl_cont, kl_disc, 0.0, 0.0)
    if config.kind == "beta-vae":
        assert config.beta is not None
        return LossTerms(recon + config.beta * kl_total, recon, kl_cont, kl_disc, 0.0, 0.0)
    if config.kind == "cc-beta-vae":
        assert config.continuous_capacity is not None
        c = capacity(config.continuous_capacity, step)
        loss = recon + config.continuous_capacity.gamma * (kl_total - c).abs()
        return LossTerms(loss, recon, kl_cont, kl_disc, c, 0.0)
    raise ValueError(f"unknown loss kind {config.kind!r}")


def model_objective(
    model: JointVAE, target: Tensor, posterior: Posterior, latent: Tensor, step: int, config: LossConfig
) -> LossTerms:
    """The training loss from a reparameterised `latent`; kinds that decode once go through `objective`."""
    if config.kind != "grouped-vae":
        return objective(model.decode_logits(latent), target, posterior, step, config)
    assert config.groups is not None and config.beta is not None
    kl_cont, kl_disc = _kls(posterior)
    recon = grouped_reconstruction(model, target, latent, config.groups, config.reconstruction)
    loss = recon + config.beta * (kl_cont.sum() + kl_disc.sum())
    return LossTerms(loss, recon, kl_cont, kl_disc, 0.0, 0.0)


def grouped_reconstruction(
    model: JointVAE, target: Tensor, latent: Tensor, groups: list[int], mode: str
) -> Tensor:
    """Sum over i of the reconstruction from groups 1..i, later groups zeroed and earlier ones detached, so
    term i trains the whole decoder but, of the encoder's outputs, only group i's (Grouped-VAE)."""
    total = latent.new_zeros(())
    start = 0
    for size in groups:
        end = start + size
        prefix = torch.zeros_like(latent)
        prefix[:, :start] = latent[:, :start].detach()
        prefix[:, start:end] = latent[:, start:end]
        total = total + reconstruction(model.decode_logits(prefix).float(), target.float(), mode)
        start = end
    return total


def _terms(
    recon_logits: Tensor, target: Tensor, posterior: Posterior, mode: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Reconstruction, per-unit KL (D,) and per-variable KL (V,), batch means."""
    return (reconstruction(recon_logits.float(), target.float(), mode), *_kls(posterior))


def _kls(posterior: Posterior) -> tuple[Tensor, Tensor]:
    kl_cont = kl_normal(posterior.mean.float(), posterior.logvar.float()).mean(dim=0)  # (D,)
    if posterior.logits:
        kl_disc = torch.stack([kl_uniform_categorical(lg.float()).mean() for lg in posterior.logits])  # (V,)
    else:
        kl_disc = torch.zeros(0, device=posterior.mean.device, dtype=torch.float32)
    return kl_cont, kl_disc


def jointvae_loss(
    recon_logits: Tensor, target: Tensor, posterior: Posterior, step: int, config: LossConfig
) -> LossTerms:
    """Equation 7 of the paper at optimiser step `step` (1 for the first batch)."""
    assert config.continuous_capacity is not None and config.discrete_capacity is not None
    recon, kl_cont, kl_disc = _terms(recon_logits, target, posterior, config.reconstruction)
    max_disc = sum(math.log(lg.shape[-1]) for lg in posterior.logits)
    c_cont = capacity(config.continuous_capacity, step)
    c_disc = capacity(config.discrete_capacity, step, ceiling=max_disc)
    loss = recon
    if kl_cont.numel():
        loss = loss + config.continuous_capacity.gamma * (kl_cont.sum() - c_cont).abs()
    if kl_disc.numel():
        loss = loss + config.discrete_capacity.gamma * (kl_disc.sum() - c_disc).abs()
    return LossTerms(loss, recon, kl_cont, kl_disc, c_cont, c_disc)
