"""The aggregate posterior of the discrete variables over a batch, q_bar(c) = mean_x q(c|x), and what it splits
JointVAE's discrete KL into.

The paper's discrete term is the batch mean of KL(q(c|x) || uniform), which decomposes exactly as

    E_x KL(q(c|x) || U) = I(x; c) + KL(q_bar(c) || U)

so a confident code that puts every image in one category (I = 0, KL(q_bar || U) = log K) meets a capacity of
log K as well as a balanced code that carries the class (I = log K, KL(q_bar || U) = 0). Both parts are
estimated on the batch the loss already reads (on the global batch under DDP, on each member's own batch in a
stack), so they cost one softmax mean per variable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from jvae.modeling.losses import Reducer
from jvae.modeling.model import kl_uniform_categorical


def aggregate_posterior(logits: list[Tensor], batch_mean: Reducer | None = None) -> list[Tensor]:
    """q_bar(c) of each variable, (K_i,) each, in float32; `batch_mean` turns a process's batch mean into the
    global batch's (its value the global mean, its gradient this process's own)."""
    means = [F.softmax(logit.float(), dim=-1).mean(dim=0) for logit in logits]
    if batch_mean is None or not means:
        return means
    sizes = [mean.numel() for mean in means]
    return list(torch.split(batch_mean(torch.cat(means)), sizes))


def marginal_kl(aggregate: list[Tensor]) -> Tensor:
    """KL(q_bar(c) || uniform) = log K - H(q_bar) of each variable, (V,): 0 for a balanced code, log K for a
    constant one (the model's KL from uniform, read with q_bar's log as the logits)."""
    return torch.stack([kl_uniform_categorical(q_bar.clamp_min(1e-12).log()) for q_bar in aggregate])


def mutual_information(kl_disc: Tensor, marginal: Tensor) -> Tensor:
    """The batch estimate of I(x; c) of each variable, (V,): the batch-mean KL from uniform less the aggregate
    posterior's own KL from uniform, `marginal` (the decomposition above)."""
    return kl_disc - marginal


def perplexity(aggregate: list[Tensor], marginal: Tensor) -> Tensor:
    """exp H(q_bar(c)) = K exp(-KL(q_bar || U)) of each variable, (V,): how many categories the code uses, 1
    for a constant code and K for a balanced one."""
    sizes = torch.tensor([float(q.numel()) for q in aggregate], device=marginal.device)
    return sizes * torch.exp(-marginal.detach())
