"""JointVAE (Dupont 2018, equation 7): capacities on the continuous and the discrete latents, controlled apart.

loss = recon + gamma_z |KL(q(z|x) || N(0, I)) - C_z| + gamma_c |KL(q(c|x) || Uniform) - C_c|

Each capacity C rises linearly from `start` to `stop` over `steps` optimiser steps (the first batch is step 1)
and the discrete one is clipped at sum_i log K_i, the largest KL a set of categoricals can have from uniform.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from jvae_cli.kinds import Kind
from jvae_cli.losses import LossInputs, LossTerms
from jvae_cli.sections import CapacitySchedule, LossBase


class JointVAELoss(LossBase):
    kind: Literal["jointvae"] = Field(
        "jointvae", title="jointvae (Dupont 2018): Gaussian and Gumbel-Softmax units, each with its capacity"
    )
    continuous_capacity: CapacitySchedule = Field(title="C_z: capacity of the continuous latents")
    discrete_capacity: CapacitySchedule = Field(
        title="C_c: capacity of the discrete latents, clipped at the sum of log(category count)"
    )


def jointvae_loss(config: JointVAELoss, batch: LossInputs) -> LossTerms:
    recon, kl_cont, kl_disc = batch.terms(config)
    max_disc = sum(math.log(lg.shape[-1]) for lg in batch.posterior.logits)
    c_cont = config.continuous_capacity.capacity(batch.step)
    c_disc = config.discrete_capacity.capacity(batch.step, ceiling=max_disc)
    loss = recon
    if kl_cont.numel():
        loss = loss + config.continuous_capacity.weight(batch.step) * (kl_cont.sum() - c_cont).abs()
    if kl_disc.numel():
        loss = loss + config.discrete_capacity.weight(batch.step) * (kl_disc.sum() - c_disc).abs()
    return LossTerms(loss, recon, kl_cont, kl_disc, c_cont, c_disc)


KIND = Kind("jointvae", JointVAELoss, jointvae_loss)
