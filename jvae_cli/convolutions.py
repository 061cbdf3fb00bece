"""The decoder's stride-2 transposed convolutions, computed on the CPU with oneDNN's convolution kernels.

A transposed convolution is the input gradient of a convolution, and its gradients are that convolution's
forward pass (for the input) and weight gradient (for the weight). PyTorch sends a transposed convolution to
oneDNN's deconvolution primitives, which for these small stride-2 layers take two to three times as long as
the convolution primitives doing the same arithmetic; `UpConv` calls the convolution primitives directly. The
results are the same numbers (the same kernels compute them), the module keeps nn.ConvTranspose2d's
parameters and state-dict keys, and on other devices it is nn.ConvTranspose2d unchanged.

This module imports only torch, like the model that uses it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx

_convolution_backward = torch.ops.aten.convolution_backward


def _layout(x: Tensor) -> torch.memory_format:
    """channels_last when `x` is laid out that way, so oneDNN keeps the layout instead of reordering."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


# Output row 2m + a of a 4x4, stride-2, padding-1 transposed convolution reads kernel rows ky of input rows
# m + shift: (ky, shift) for the even (a = 0) and odd (a = 1) rows; the same holds for columns.
_TAPS = {0: ((1, 0), (3, -1)), 1: ((2, 0), (0, 1))}


def _few_outputs(weight: Tensor, stride: list[int], padding: list[int]) -> bool:
    """The layer writing the image: so few output channels that oneDNN's kernels idle most of their lanes."""
    fits = tuple(weight.shape[2:]) == (4, 4) and list(stride) == [2, 2] and list(padding) == [1, 1]
    return fits and weight.shape[1] * 16 <= weight.shape[0]


def _scatter_products(x: Tensor, weight: Tensor) -> Tensor:
    """The transposed convolution as one matrix product, every input pixel times every kernel tap, whose
    products are then added into the four interleaved output phases (float32 sums, like oneDNN's)."""
    batch, channels, height, width = x.shape
    outputs = weight.shape[1]
    rows = x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
    products = torch.matmul(weight.reshape(channels, outputs * 16).t(), rows.transpose(1, 2))
    products = products.view(batch, outputs, 4, 4, height, width)
    y = torch.empty((batch, outputs, height, 2, width, 2), dtype=torch.float32, device=x.device)
    for a, row_taps in _TAPS.items():
        for c, column_taps in _TAPS.items():
            phase = y[:, :, :, a, :, c]
            for i, ((ky, dy), (kx, dx)) in enumerate((r, k) for r in row_taps for k in column_taps):
                source = products[
                    :, :, ky, kx, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)
                ]
                target = phase[:, :, max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)]
                if i == 0:  # the first tap of each phase has shift (0, 0) and covers the whole phase
                    target.copy_(source)
                else:
                    target.add_(source)
    return y.view(batch, outputs, 2 * height, 2 * width)


class _TransposedConvolution(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        stride: list[int],
        padding: list[int],
        output_size: list[int],
    ) -> Tensor:
        if _few_outputs(weight, stride, padding):
            y = _scatter_products(x, weight).to(x.dtype)
        else:
            # The convolution whose input gradient this is has an input of `output_size`; only its shape
            # and layout are read, so an uninitialised tensor stands in for it.
            shell = torch.empty(output_size, dtype=x.dtype, device=x.device, memory_format=_layout(x))
            y = _convolution_backward(
                x, shell, weight, None, stride, padding, [1, 1], False, [0, 0], 1, [True, False, False]
            )[0]
        if bias is not None:
            y = y + bias.view(1, -1, 1, 1)
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None  # type: ignore[attr-defined]
        return y

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors  # type: ignore[attr-defined]
        stride, padding = ctx.stride, ctx.padding  # type: ignore[attr-defined]
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            grad_x = F.conv2d(grad, weight, None, stride, padding)
        if ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            grad_weight = _convolution_backward(
                x, grad, weight, None, stride, padding, [1, 1], False, [0, 0], 1, [False, True, False]
            )[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:  # type: ignore[attr-defined]
            grad_bias = grad.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias, None, None, None


class UpConv(nn.ConvTranspose2d):
    """nn.ConvTranspose2d (groups 1, no dilation or output padding) that runs on the convolution kernels on
    the CPU, casting to the autocast dtype when autocast is on as nn.ConvTranspose2d would."""

    on_convolution_kernels = True  # False makes it nn.ConvTranspose2d everywhere (the bench's reference)

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        routable = self.on_convolution_kernels and (
            self.groups == 1
            and tuple(self.dilation) == (1, 1)
            and tuple(self.output_padding) == (0, 0)
            and self.padding_mode == "zeros"
        )
        if x.device.type != "cpu" or output_size is not None or x.dim() != 4 or not routable:
            return super().forward(x, output_size)
        if torch.is_autocast_enabled("cpu"):
            dtype = torch.get_autocast_dtype("cpu")
            x = x.to(dtype)
            weight = self.weight.to(dtype)
            bias = None if self.bias is None else self.bias.to(dtype)
        else:
            weight, bias = self.weight, self.bias
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        size = [
            x.shape[0],
            self.out_channels,
            (x.shape[2] - 1) * sh - 2 * ph + kh,
            (x.shape[3] - 1) * sw - 2 * pw + kw,
        ]
        return _TransposedConvolution.apply(x, weight, bias, list(self.stride), list(self.padding), size)


def as_stock_layers(model: nn.Module) -> nn.Module:
    """The model computing its transposed convolutions with PyTorch's own kernels, as code written against
    plain nn.ConvTranspose2d does (the reference loop of `jvae bench`)."""
    for module in model.modules():
        if isinstance(module, UpConv):
            module.on_convolution_kernels = False
    return model
