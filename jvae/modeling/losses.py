"""The terms every model kind's loss is made of, as plain functions, so evaluation can use them without a
trainer: the likelihoods of the reconstruction, and the batch a kind's loss reads (whose KLs its posterior
computes).

The kinds themselves (JointVAE's capacity objective, beta-VAE, beta-TCVAE, ...) live in `jvae.kinds`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from jvae import fast
from jvae.base.sections import LossBase
from jvae.fast.bernoulli import bernoulli_nll_sum as fast_bernoulli_nll_sum
from jvae.modeling.model import Posterior

# ----------------------------------------------------------------------------------------------- terms


def bernoulli_nll_sum(logits: Tensor, target: Tensor) -> Tensor:
    """Bernoulli negative log-likelihood of `target` under `logits`, summed over every element in float32 or
    wider (as autocast runs PyTorch's own loss), whatever precision the logits come in."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    if fast.enabled():
        return fast_bernoulli_nll_sum(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="sum")


GAUSSIAN_SCALE = math.sqrt(0.5)  # sigma with which the Gaussian data term is the plain sum of squared errors
LAPLACE_SCALE = 1.0  # b with which the Laplace data term is the plain sum of absolute errors


def reconstruction(
    logits: Tensor, target: Tensor, mode: str = "bce-sum", scale: float | None = None
) -> Tensor:
    """Negative log-likelihood of the batch under the decoder, averaged over images.

    The decoder's output is the pixel mean through a sigmoid. bce-sum: Bernoulli, the pixel BCE summed over
    C*H*W; bce-official: the official code's mean BCE times H*W (the per-image sum divided by C for RGB, kept
    to reproduce its CelebA runs). gaussian: N(x; mean, scale^2) per pixel, fixed variance, so
    sum (x - mean)^2 / (2 scale^2) + D/2 log(2 pi scale^2); laplace: sum |x - mean| / scale + D log(2 scale).
    Both include their normalising constants, so ELBOs of different likelihoods are both log-likelihood bounds.
    """
    batch = target.shape[0]
    if mode in ("gaussian", "laplace"):
        mean = torch.sigmoid(logits.float())
        pixels = target[0].numel()
        if mode == "gaussian":
            sigma = scale if scale is not None else GAUSSIAN_SCALE
            squared = (target.float() - mean).pow(2).sum() / (2 * sigma * sigma)
            return squared / batch + 0.5 * pixels * math.log(2 * math.pi * sigma * sigma)
        b = scale if scale is not None else LAPLACE_SCALE
        return (target.float() - mean).abs().sum() / (b * batch) + pixels * math.log(2 * b)
    per_pixel_sum = bernoulli_nll_sum(logits, target)
    if mode == "bce-sum":
        return per_pixel_sum / batch
    if mode == "bce-official":
        return per_pixel_sum / (batch * target.shape[1])
    raise ValueError(f"unknown reconstruction mode {mode!r}")


# ----------------------------------------------------------------------------------------------- a kind's input


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


Reducer = Callable[[Tensor], Tensor]


class Penalty(Protocol):
    """A kind's second network as its loss sees it: a differentiable penalty whose own parameters receive no
    gradient."""

    def penalty(self, codes: Tensor, labels: Tensor | None = None) -> Tensor: ...


@dataclass
class LossInputs:
    """One batch as a kind's loss reads it."""

    target: Tensor  # (B, C, H, W) images in [0, 1]
    posterior: Posterior
    latent: Tensor  # (B, D + sum K) reparameterised sample
    step: int  # optimiser step, 1 for the first batch
    decode: Callable[[Tensor], Tensor]  # latent -> reconstruction logits
    generic: int = 0  # class-conditional models: how many continuous units are class-generic
    dataset_size: int | None = None  # for estimators of the aggregate posterior
    critic: Penalty | None = None
    labels: Tensor | None = None  # (B,) class indices, for kinds that read them
    kl_mean: Reducer | None = None  # averages batch-mean KLs over the processes of a distributed run
    jittered: Posterior | None = None  # q(z, c | T x) of the batch jittered as the loss's `jitter()` asks

    @property
    def continuous(self) -> int:
        return self.posterior.mean.shape[1]

    def terms(self, config: LossBase) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstruction (the likelihood `config` names) of one decode of the latent, per-unit KL (D,) and
        per-variable KL (V,), batch means."""
        logits = self.decode(self.latent)
        nll = reconstruction(logits.float(), self.target.float(), config.reconstruction, config.noise_scale)
        return (nll, *self.kls())

    def kls(self) -> tuple[Tensor, Tensor]:
        """Per-unit KL (D,) and per-variable KL (V,), batch means over the global batch."""
        posterior = self.posterior
        kl_cont = posterior.kl_continuous().mean(dim=0)  # (D,)
        if posterior.logits:
            kl_disc = torch.stack([kl.mean() for kl in posterior.kl_discrete()])  # (V,)
        else:
            kl_disc = torch.zeros(0, device=posterior.mean.device, dtype=torch.float32)
        if self.kl_mean is None:
            return kl_cont, kl_disc
        both = self.kl_mean(torch.cat([kl_cont, kl_disc]))  # one collective for both kinds of latent
        return both[: kl_cont.numel()], both[kl_cont.numel() :]
