"""Grouped-VAE (Halevi): the continuous units in consecutive groups, each trained to add to the reconstruction
made from the groups before it, so earlier groups carry the coarse factors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from jvae.base.limits import LATENT_MAX
from jvae.base.sections import LossBase, ModelConfig
from jvae.kinds import Kind
from jvae.modeling.losses import LossInputs, LossTerms, reconstruction


class GroupedVAELoss(LossBase):
    kind: Literal["grouped-vae"] = Field(
        title="grouped-vae (Halevi): reconstruction from each prefix of groups"
    )
    beta: float = Field(ge=0, title="Weight of the KL term")
    groups: list[int] = Field(
        max_length=LATENT_MAX,
        title="Sizes of the consecutive groups of continuous units, summing to model.continuous",
    )


def grouped_reconstruction(
    decode: Callable[[Tensor], Tensor],
    target: Tensor,
    latent: Tensor,
    groups: list[int],
    mode: str,
    scale: float | None = None,
) -> Tensor:
    """Sum over i of the reconstruction from groups 1..i, later groups zeroed and earlier ones detached, so
    term i trains the whole decoder but, of the encoder's outputs, only group i's."""
    total = latent.new_zeros(())
    start = 0
    for size in groups:
        end = start + size
        prefix = torch.zeros_like(latent)
        prefix[:, :start] = latent[:, :start].detach()
        prefix[:, start:end] = latent[:, start:end]
        total = total + reconstruction(decode(prefix).float(), target.float(), mode, scale)
        start = end
    return total


def grouped_vae_loss(config: GroupedVAELoss, batch: LossInputs) -> LossTerms:
    kl_cont, kl_disc = batch.kls()
    recon = grouped_reconstruction(
        batch.decode, batch.target, batch.latent, config.groups, config.reconstruction, config.noise_scale
    )
    loss = recon + config.beta * (kl_cont.sum() + kl_disc.sum())
    return LossTerms(loss, recon, kl_cont, kl_disc, 0.0, 0.0)


def check(loss: GroupedVAELoss, model: ModelConfig) -> None:
    groups = loss.groups
    if any(g < 1 for g in groups) or sum(groups) != model.continuous:
        raise ValueError(
            f"loss.groups {groups} must be positive and sum to model.continuous ({model.continuous})"
        )
    if model.discrete:
        raise ValueError("grouped-vae groups continuous units only; set model.discrete = []")


KIND = Kind("grouped-vae", GroupedVAELoss, grouped_vae_loss, check=check)
