"""JointVAE (Dupont 2018, equation 7): capacities on the continuous and the discrete latents, controlled apart.

loss = recon + gamma_z |KL(q(z|x) || N(0, I)) - C_z| + gamma_c |KL(q(c|x) || Uniform) - C_c|

Each capacity C rises linearly from `start` to `stop` over `steps` optimiser steps (the first batch is step 1)
and the discrete one is clipped at sum_i log K_i, the largest KL a set of categoricals can have from uniform.

The paper's discrete term cannot tell a constant confident code from one that carries the class (see
`jvae.modeling.aggregate`). Two options, both off by default so the paper's objective is what a preset trains
unless it asks:
- `discrete_measure = "mutual-information"`: the discrete capacity controls the batch estimate of I(x; c)
  instead of the KL, |I(x; c) - C_c|, so a constant code pays gamma_c * C_c (the capacity on the information
  the code carries, as GMVAE's minimum-information constraint and IMSAT's objective put it);
- `marginal_weight = w`: w * KL(q_bar(c) || U) added to the loss, IMSAT's marginal-entropy term (Hu et al.
  2017), optionally only until step `marginal_steps`, so it can pull a run off the constant-code plateau
  without holding the code balanced afterwards;
- `consistency_weight = w`: w * E_x KL(q(c|x) || q(c|T x)) added to the loss, T a small random rotation,
  shift and zoom (`consistency_jitter`) and q(c|x) held fixed in the gradient: IMSAT's self-augmented
  training (Hu et al. 2017), with the affine moves IIC (Ji et al. 2019) uses for digits. The code must then
  be what survives a small move of the image, the digit rather than its slant or stroke, the shape of a
  sprite rather than its position or orientation.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from jvae.base.limits import STEPS_MAX
from jvae.base.sections import CapacitySchedule, Jitter, LossBase, ModelConfig
from jvae.kinds import Kind
from jvae.modeling.aggregate import aggregate_posterior, marginal_kl, mutual_information, perplexity
from jvae.modeling.losses import LossInputs, LossTerms


class JointVAELoss(LossBase):
    kind: Literal["jointvae"] = Field(
        "jointvae", title="jointvae (Dupont 2018): Gaussian and Gumbel-Softmax units, each with its capacity"
    )
    continuous_capacity: CapacitySchedule = Field(title="C_z: capacity of the continuous latents")
    discrete_capacity: CapacitySchedule = Field(
        title="C_c: capacity of the discrete latents, clipped at the sum of log(category count)"
    )
    discrete_measure: Literal["kl", "mutual-information"] = Field(
        "kl",
        title="What C_c bounds: kl, the paper's batch mean of KL(q(c|x) || uniform); mutual-information, the "
        "batch estimate of I(x; c), that KL less KL(q_bar(c) || uniform), so a constant code does not meet it",
    )
    marginal_weight: float = Field(
        0.0,
        ge=0,
        title="Weight of KL(q_bar(c) || uniform), the aggregate posterior's distance from a balanced code "
        "(IMSAT's marginal-entropy term), added to the loss; 0: the paper's objective",
    )
    marginal_steps: int | None = Field(
        None,
        ge=1,
        le=STEPS_MAX,
        title="Apply the marginal term only up to this step (unset: for the whole run)",
    )

    consistency_weight: float = Field(
        0.0,
        ge=0,
        title="Weight of the batch mean of KL(q(c|x) || q(c|T x)), how far a small random move T of each image "
        "moves its discrete code (IMSAT's self-augmented training); 0: the paper's objective",
    )
    consistency_jitter: Jitter = Field(
        default_factory=Jitter, title="The random move T of the consistency term"
    )

    @property
    def reads_aggregate(self) -> bool:
        return self.discrete_measure != "kl" or self.marginal_weight > 0

    def jitter(self) -> Jitter | None:
        return self.consistency_jitter if self.consistency_weight > 0 else None


def jointvae_loss(config: JointVAELoss, batch: LossInputs) -> LossTerms:
    recon, kl_cont, kl_disc = batch.terms(config)
    max_disc = sum(math.log(lg.shape[-1]) for lg in batch.posterior.logits)
    c_cont = config.continuous_capacity.capacity(batch.step)
    c_disc = config.discrete_capacity.capacity(batch.step, ceiling=max_disc)
    loss = recon
    if kl_cont.numel():
        loss = loss + config.continuous_capacity.weight(batch.step) * (kl_cont.sum() - c_cont).abs()
    if not kl_disc.numel():
        return LossTerms(loss, recon, kl_cont, kl_disc, c_cont, c_disc)
    bounded, marginal_term = kl_disc, None
    extra: dict[str, Tensor] = {}
    if config.reads_aggregate:
        aggregate = aggregate_posterior(batch.posterior.logits, batch.kl_mean)
        marginal = marginal_kl(aggregate)
        information = mutual_information(kl_disc, marginal)
        if config.discrete_measure == "mutual-information":
            bounded = information
        if config.marginal_weight > 0 and (
            config.marginal_steps is None or batch.step <= config.marginal_steps
        ):
            marginal_term = config.marginal_weight * marginal.sum()
        extra = {
            "mutual_info": information.detach(),
            "marginal_kl": marginal.detach(),
            "perplexity": perplexity(aggregate, marginal),
        }
    loss = loss + config.discrete_capacity.weight(batch.step) * (bounded.sum() - c_disc).abs()
    if marginal_term is not None:
        loss = loss + marginal_term
    if config.consistency_weight > 0 and batch.jittered is not None:
        moved = consistency(batch.posterior.logits, batch.jittered.logits)
        if batch.kl_mean is not None:
            moved = batch.kl_mean(moved)
        loss = loss + config.consistency_weight * moved.sum()
        extra["consistency"] = moved.detach()
    return LossTerms(loss, recon, kl_cont, kl_disc, c_cont, c_disc, extra)


def consistency(logits: list[Tensor], moved: list[Tensor]) -> Tensor:
    """Batch-mean KL(q(c|x) || q(c|T x)) of each variable, (V,), with q(c|x) a constant target: the moved
    image's code is pulled to the image's, not both towards whatever is easiest to agree on."""
    return torch.stack(
        [
            F.kl_div(
                F.log_softmax(other.float(), dim=-1),
                F.log_softmax(logit.detach().float(), dim=-1),
                reduction="batchmean",
                log_target=True,
            )
            for logit, other in zip(logits, moved)
        ]
    )


def check(loss: JointVAELoss, model: ModelConfig) -> None:
    if loss.consistency_weight > 0 and not model.discrete:
        raise ValueError(
            "loss.consistency_weight compares discrete codes: the model has no discrete variables "
            "(model.discrete is empty)"
        )


KIND = Kind("jointvae", JointVAELoss, jointvae_loss, check=check)
