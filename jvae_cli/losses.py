"""The JointVAE objective (Dupont 2018, equation 7) as plain functions, so evaluation can use it without a trainer.

loss = recon + gamma_z |KL(q(z|x) || N(0, I)) - C_z| + gamma_c |KL(q(c|x) || Uniform) - C_c|

Each capacity C rises linearly from `start` to `stop` over `steps` optimiser steps (the first batch is step 1)
and the discrete one is clipped at sum_i log K_i, the largest KL a set of categoricals can have from uniform.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx

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


class _BernoulliNLL(torch.autograd.Function):
    """sum over pixels of BCE(sigmoid(logits), target), written as max(l, 0) - l t + log(1 + exp(-|l|)).

    PyTorch's fused loss evaluates log-sigmoid with a scalar log1p that costs more than the rest of the
    loss together; exp then log is vectorised, and the few ulps it gives up where exp(-|l|) is below
    float32's epsilon are far below the sum's own rounding. The gradient is sigmoid(l) - t, as for the
    stock loss.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, logits: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(logits, target)
        softplus_of_negative_magnitude = logits.abs().neg_().exp_().add_(1).log_()
        return (
            softplus_of_negative_magnitude.sum()
            + logits.clamp_min(0).sum()
            - torch.dot(logits.reshape(-1), target.reshape(-1).to(logits.dtype))
        )

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        logits, target = ctx.saved_tensors  # type: ignore[attr-defined]
        return torch.sigmoid(logits).sub_(target).mul_(grad), None


_STOCK_BCE: ContextVar[bool] = ContextVar("stock_bce", default=False)


@contextmanager
def stock_loss_kernels() -> Iterator[None]:
    """Reconstruction through PyTorch's own fused binary cross-entropy, as plain code computes it (the
    reference loop of `jvae bench` and the eager path of the loss-trajectory benchmark)."""
    token = _STOCK_BCE.set(True)
    try:
        yield
    finally:
        _STOCK_BCE.reset(token)


def bernoulli_nll_sum(logits: Tensor, target: Tensor) -> Tensor:
    """Bernoulli negative log-likelihood of `target` under `logits`, summed over every element in float32 or
    wider (as autocast runs PyTorch's own loss), whatever precision the logits come in."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    if _STOCK_BCE.get():
        return F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
    return _BernoulliNLL.apply(logits, target)


def reconstruction(logits: Tensor, target: Tensor, mode: str = "bce-sum") -> Tensor:
    """Bernoulli negative log-likelihood of the batch, averaged over images.

    bce-sum sums the pixel BCE over C*H*W; bce-official is the official code's mean BCE times H*W, which is
    the same for greyscale and the per-image sum divided by C for RGB (kept to reproduce its CelebA runs).
    """
    per_pixel_sum = bernoulli_nll_sum(logits, target)
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
    extra: dict[str, Tensor] = field(default_factory=dict)  # a kind's own terms, logged under their names


def objective(
    recon_logits: Tensor,
    target: Tensor,
    posterior: Posterior,
    step: int,
    config: LossConfig,
    kl_mean: Reducer | None = None,
) -> LossTerms:
    """The loss `config.kind` names, at optimiser step `step` (1 for the first batch).

    `kl_mean`, in a distributed run, turns this process's batch-mean KLs into the global batch's (see
    `distributed.global_mean`), so capacity terms |KL - C| see the whole batch as one process would.
    """
    if config.kind == "jointvae":
        return jointvae_loss(recon_logits, target, posterior, step, config, kl_mean)
    recon, kl_cont, kl_disc = _terms(recon_logits, target, posterior, config.reconstruction, kl_mean)
    kl_total = kl_cont.sum() + kl_disc.sum()
    if config.kind == "vae":
        return LossTerms(recon + kl_total, recon, kl_cont, kl_disc, 0.0, 0.0)
    if config.kind == "beta-vae":
        assert config.beta is not None
        return LossTerms(recon + config.beta * kl_total, recon, kl_cont, kl_disc, 0.0, 0.0)
    if config.kind == "cc-beta-vae":
        assert config.continuous_capacity is not None
        c = capacity(config.continuous_capacity, step)
        loss = recon + config.continuous_capacity.weight(step) * (kl_total - c).abs()
        return LossTerms(loss, recon, kl_cont, kl_disc, c, 0.0)
    raise ValueError(f"unknown loss kind {config.kind!r}")


Reducer = Callable[[Tensor], Tensor]


class Critic(Protocol):
    """The second network of factor-vae (a discriminator) and class-conditional (a classifier), as the VAE's
    loss sees it: a differentiable penalty whose own parameters receive no gradient."""

    def penalty(self, codes: Tensor, labels: Tensor | None = None) -> Tensor: ...


def model_objective(
    model: JointVAE,
    target: Tensor,
    posterior: Posterior,
    latent: Tensor,
    step: int,
    config: LossConfig,
    *,
    dataset_size: int | None = None,
    critic: Critic | None = None,
    labels: Tensor | None = None,
    kl_mean: Reducer | None = None,
) -> LossTerms:
    """The training loss from a reparameterised `latent`; kinds that decode once go through `objective`.

    beta-tcvae needs the dataset size for its estimators; factor-vae and class-conditional need their critic.
    """
    if config.kind == "grouped-vae":
        assert config.groups is not None and config.beta is not None
        kl_cont, kl_disc = _kls(posterior, kl_mean)
        recon = grouped_reconstruction(model, target, latent, config.groups, config.reconstruction)
        loss = recon + config.beta * (kl_cont.sum() + kl_disc.sum())
        return LossTerms(loss, recon, kl_cont, kl_disc, 0.0, 0.0)
    recon_logits = model.decode_logits(latent)
    if config.kind == "beta-tcvae":
        if dataset_size is None:
            raise ValueError("beta-tcvae needs the dataset size")
        return beta_tcvae_loss(recon_logits, target, posterior, latent, dataset_size, config, kl_mean)
    if config.kind == "factor-vae":
        assert config.gamma is not None and critic is not None
        recon, kl_cont, kl_disc = _terms(recon_logits, target, posterior, config.reconstruction, kl_mean)
        tc = critic.penalty(latent[:, : model.continuous])
        loss = recon + kl_cont.sum() + kl_disc.sum() + config.gamma * tc
        return LossTerms(loss, recon, kl_cont, kl_disc, 0.0, 0.0, {"tc": tc})
    if config.kind == "class-conditional":
        assert critic is not None and labels is not None
        return class_conditional_loss(
            recon_logits, target, posterior, latent, step, config, model.generic, critic, labels, kl_mean
        )
    return objective(recon_logits, target, posterior, step, config, kl_mean)


# ----------------------------------------------------------------------------------------------- beta-TCVAE


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


def beta_tcvae_loss(
    recon_logits: Tensor,
    target: Tensor,
    posterior: Posterior,
    latent: Tensor,
    dataset_size: int,
    config: LossConfig,
    kl_mean: Reducer | None = None,
) -> LossTerms:
    """recon + alpha MI + beta TC + gamma dimension-wise KL of the Gaussian units (Chen 2018).

    Discrete variables, if the model has any, stay out of the decomposition: their KL to the uniform prior is
    added with weight 1, as in the plain ELBO.
    """
    assert config.alpha is not None and config.beta is not None and config.gamma is not None
    recon, kl_cont, kl_disc = _terms(recon_logits, target, posterior, config.reconstruction, kl_mean)
    d = posterior.mean.shape[1]
    mi, tc, dwkl = tc_decomposition(
        latent[:, :d].float(),
        posterior.mean.float(),
        posterior.logvar.float(),
        dataset_size,
        config.estimator or "mws",
    )
    loss = recon + config.alpha * mi + config.beta * tc + config.gamma * dwkl + kl_disc.sum()
    return LossTerms(loss, recon, kl_cont, kl_disc, 0.0, 0.0, {"mi": mi, "tc": tc, "dwkl": dwkl})


# ----------------------------------------------------------------------------------------------- class-conditional


def class_conditional_loss(
    recon_logits: Tensor,
    target: Tensor,
    posterior: Posterior,
    latent: Tensor,
    step: int,
    config: LossConfig,
    generic: int,
    critic: Critic,
    labels: Tensor,
    kl_mean: Reducer | None = None,
) -> LossTerms:
    """recon + beta |KL_z - C_z| + gamma |KL_w - C_w| - weight * L_class(z) (Kondamudi & Balasubramanian).

    The VAE step maximises the classifier's binary cross-entropy on the generic units z, pushing the label
    out of them; the classifier's own step (not here) minimises it.
    """
    assert config.continuous_capacity is not None and config.specific_capacity is not None
    recon, kl_cont, kl_disc = _terms(recon_logits, target, posterior, config.reconstruction, kl_mean)
    c_z = capacity(config.continuous_capacity, step)
    c_w = capacity(config.specific_capacity, step)
    kl_z, kl_w = kl_cont[:generic].sum(), kl_cont[generic:].sum()
    class_bce = critic.penalty(latent[:, :generic], labels)
    weight = 1.0 if config.adversary_weight is None else config.adversary_weight
    loss = (
        recon
        + config.continuous_capacity.weight(step) * (kl_z - c_z).abs()
        + config.specific_capacity.weight(step) * (kl_w - c_w).abs()
        - weight * class_bce
    )
    extra = {"kl_z": kl_z, "kl_w": kl_w, "classifier_on_z": class_bce, "capacity_w": kl_z.new_tensor(c_w)}
    return LossTerms(loss, recon, kl_cont, kl_disc, c_z, 0.0, extra)


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
    recon_logits: Tensor, target: Tensor, posterior: Posterior, mode: str, kl_mean: Reducer | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Reconstruction, per-unit KL (D,) and per-variable KL (V,), batch means."""
    return (reconstruction(recon_logits.float(), target.float(), mode), *_kls(posterior, kl_mean))


def _kls(posterior: Posterior, kl_mean: Reducer | None = None) -> tuple[Tensor, Tensor]:
    kl_cont = kl_normal(posterior.mean.float(), posterior.logvar.float()).mean(dim=0)  # (D,)
    if posterior.logits:
        kl_disc = torch.stack([kl_uniform_categorical(lg.float()).mean() for lg in posterior.logits])  # (V,)
    else:
        kl_disc = torch.zeros(0, device=posterior.mean.device, dtype=torch.float32)
    if kl_mean is None:
        return kl_cont, kl_disc
    both = kl_mean(torch.cat([kl_cont, kl_disc]))  # one collective for both kinds of latent
    return both[: kl_cont.numel()], both[kl_cont.numel() :]


def jointvae_loss(
    recon_logits: Tensor,
    target: Tensor,
    posterior: Posterior,
    step: int,
    config: LossConfig,
    kl_mean: Reducer | None = None,
) -> LossTerms:
    """Equation 7 of the paper at optimiser step `step` (1 for the first batch)."""
    assert config.continuous_capacity is not None and config.discrete_capacity is not None
    recon, kl_cont, kl_disc = _terms(recon_logits, target, posterior, config.reconstruction, kl_mean)
    max_disc = sum(math.log(lg.shape[-1]) for lg in posterior.logits)
    c_cont = capacity(config.continuous_capacity, step)
    c_disc = capacity(config.discrete_capacity, step, ceiling=max_disc)
    loss = recon
    if kl_cont.numel():
        loss = loss + config.continuous_capacity.weight(step) * (kl_cont.sum() - c_cont).abs()
    if kl_disc.numel():
        loss = loss + config.discrete_capacity.weight(step) * (kl_disc.sum() - c_disc).abs()
    return LossTerms(loss, recon, kl_cont, kl_disc, c_cont, c_disc)
