"""Initial weights as another PyTorch release drew them, for runs that must start where a paper's did.

The released JointVAE models were trained on PyTorch 0.4.1. Its default initialisation drew every
convolution, transposed convolution and linear layer's weight and bias uniformly within 1/sqrt(n), with n the
layer's `in_channels * k * k` (or `in_features`). Today's defaults draw the same uniform numbers in the same
order within 1/sqrt(fan_in), where fan_in reads the weight's second axis: for convolutions and linear layers
that is the same n, but a transposed convolution's weight is (in, out, k, k), so today's bound uses
`out_channels * k * k`. The decoder's last layer (32 -> 1 channels) thus starts 5.66 times smaller under
0.4.1. Scaling today's draws by the ratio of the bounds gives 0.4.1's draws for the same seed without
drawing again, so the rest of the run's random stream is unchanged.
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
from torch import Tensor, nn

AnyModule = TypeVar("AnyModule", bound=nn.Module)


def bound_pytorch04(layer: nn.Module) -> float | None:
    """The half-width of PyTorch 0.4.1's uniform initialisation of `layer` (None: not a layer it drew)."""
    if isinstance(layer, nn.modules.conv._ConvNd):
        return 1.0 / math.sqrt(layer.in_channels * math.prod(layer.kernel_size))
    if isinstance(layer, nn.Linear):
        return 1.0 / math.sqrt(layer.in_features)
    return None


def bound_current(layer: nn.Module) -> float | None:
    """The half-width of today's default initialisation of `layer` (weights and biases alike)."""
    if isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear)):
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(layer.weight)
        return 1.0 / math.sqrt(fan_in)
    return None


@torch.no_grad()
def as_pytorch04(model: AnyModule) -> AnyModule:
    """`model`, freshly initialised by today's defaults, rescaled to PyTorch 0.4.1's initialisation."""
    for layer in model.modules():
        old, new = bound_current(layer), bound_pytorch04(layer)
        if old is None or new is None or old == new:
            continue
        tensors: list[Tensor | None] = [layer.weight, layer.bias]  # type: ignore[list-item]
        for tensor in tensors:
            if tensor is not None:
                tensor.mul_(new / old)
    return model
