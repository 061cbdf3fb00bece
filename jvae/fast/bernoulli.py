"""The Bernoulli reconstruction's sum, fused: what `losses.bernoulli_nll_sum` computes unless the stock
switch is on (`jvae.fast`)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx


class _BernoulliNLL(torch.autograd.Function):
    """sum over pixels of BCE(sigmoid(logits), target), written as max(l, 0) - l t + log(1 + exp(-|l|)).

    PyTorch's fused loss evaluates log-sigmoid with a scalar log1p that costs more than the rest of the
    loss together; exp then log is vectorised, and the few ulps it gives up where exp(-|l|) is below
    float32's epsilon are far below the sum's own rounding. The gradient is sigmoid(l) - t, as for the
    stock loss.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, logits: Tensor, target: Tensor) -> Tensor:
        ctx.save_for_backward(logits, target)
        softplus_of_negative_magnitude = logits.abs().neg_().exp_().add_(1).log_()
        return (
            softplus_of_negative_magnitude.sum()
            + logits.clamp_min(0).sum()
            - torch.dot(logits.reshape(-1), target.reshape(-1).to(logits.dtype))
        )

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        logits, target = ctx.saved_tensors  # type: ignore[attr-defined]
        return torch.sigmoid(logits).sub_(target).mul_(grad), None


def bernoulli_nll_sum(logits: Tensor, target: Tensor) -> Tensor:
    """The summed Bernoulli negative log-likelihood of float32 (or wider) `logits`."""
    return _BernoulliNLL.apply(logits, target)
