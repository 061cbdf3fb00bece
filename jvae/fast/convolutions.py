"""The decoder's stride-2 transposed convolutions, computed on the CPU with oneDNN's convolution kernels.

A transposed convolution is the input gradient of a convolution, and its gradients are that convolution's
forward pass (for the input) and weight gradient (for the weight). PyTorch sends a transposed convolution to
oneDNN's deconvolution primitives, which for these small stride-2 layers take two to three times as long as
the convolution primitives doing the same arithmetic; `UpConv` calls the convolution primitives directly. The
results are the same numbers (the same kernels compute them), the module keeps nn.ConvTranspose2d's
parameters and state-dict keys, and on other devices it is nn.ConvTranspose2d unchanged.

This module imports only torch; `jvae.fast.swap_in` puts its layers in place of the stock ones.
"""

from __future__ import annotations

from typing import cast

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


def _four_by_four_halving(weight: Tensor, stride: list[int], padding: list[int]) -> bool:
    """The geometry of every jvae convolution: a 4x4 kernel, stride 2, padding 1."""
    return tuple(weight.shape[2:]) == (4, 4) and list(stride) == [2, 2] and list(padding) == [1, 1]


def _few_outputs(weight: Tensor, stride: list[int], padding: list[int]) -> bool:
    """The layer writing the image: so few output channels that oneDNN's kernels idle most of their lanes."""
    return _four_by_four_halving(weight, stride, padding) and weight.shape[1] * 16 <= weight.shape[0]


def _scatter_products(x: Tensor, weight: Tensor) -> Tensor:
    """The transposed convolution as one matrix product, every input pixel times every kernel tap, whose
    products are then added into the four interleaved output phases (float32 sums, like oneDNN's).

    The product is one 2-D (taps x channels) @ (channels x pixels) so that each tap's products form a
    contiguous plane; a channels-last `x` is already the transposed right-hand side, read without a copy.
    """
    batch, channels, height, width = x.shape
    outputs = weight.shape[1]
    pixels = x.permute(1, 0, 2, 3).reshape(channels, batch * height * width)
    products = torch.mm(weight.reshape(channels, outputs * 16).t(), pixels)
    products = products.view(outputs, 4, 4, batch, height, width)
    y = torch.empty((batch, outputs, height, 2, width, 2), dtype=torch.float32, device=x.device)
    for a, row_taps in _TAPS.items():
        for c, column_taps in _TAPS.items():
            phase = y[:, :, :, a, :, c]
            for i, ((ky, dy), (kx, dx)) in enumerate((r, k) for r in row_taps for k in column_taps):
                source = products[
                    :, ky, kx, :, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)
                ].transpose(0, 1)
                target = phase[:, :, max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)]
                if i == 0:  # the first tap of each phase has shift (0, 0) and covers the whole phase
                    target.copy_(source)
                else:
                    target.add_(source)
    return y.view(batch, outputs, 2 * height, 2 * width)


def _window_rows(image: Tensor) -> Tensor:
    """(16, B * H/2 * W/2): what each tap of a 4x4, stride-2, padding-1 window over the one-channel `image`
    reads at every output position, one row per tap."""
    batch, _, height, width = image.shape
    padded = F.pad(image.reshape(batch, height, width), (1, 1, 1, 1))
    row, column = padded.stride(1), padded.stride(2)
    windows = padded.as_strided(
        (4, 4, batch, height // 2, width // 2),
        (row, column, padded.stride(0), 2 * row, 2 * column),
    )
    return windows.reshape(16, -1)


def _one_channel_weight_grad(image: Tensor, other: Tensor) -> Tensor:
    """The weight gradient of a 4x4, stride-2, padding-1 convolution between a one-channel `image` and the
    (B, C, H/2, W/2) `other` it is paired with, as (C, 1, 4, 4): a single matrix product over every pixel
    of the batch, where oneDNN's weight-gradient kernel leaves most of its lanes idle on one channel."""
    channels = other.shape[1]
    per_channel = other.permute(1, 0, 2, 3).reshape(channels, -1)  # a view of a channels-last `other`
    return torch.mm(per_channel, _window_rows(image).t()).view(channels, 1, 4, 4)


def _one_channel(weight: Tensor, stride: list[int], padding: list[int], image: Tensor) -> bool:
    """A 4x4, stride-2, padding-1 layer whose image side has one channel and even sides."""
    even = image.shape[2] % 2 == 0 and image.shape[3] % 2 == 0
    return _four_by_four_halving(weight, stride, padding) and image.shape[1] == 1 and even


def _keep(
    ctx: FunctionCtx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int]
) -> None:
    """What a layer's backward needs: its input, its weight, its geometry and whether it has a bias."""
    ctx.save_for_backward(x, weight)
    ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None  # type: ignore[attr-defined]


def _kept(ctx: FunctionCtx) -> tuple[Tensor, Tensor, list[int], list[int]]:
    x, weight = ctx.saved_tensors  # type: ignore[attr-defined]
    return x, weight, ctx.stride, ctx.padding  # type: ignore[attr-defined]


class _TransposedConvolution(torch.autograd.Function):
    @staticmethod
    def forward(
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
            y.add_(bias.view(1, -1, 1, 1))  # y is this call's own fresh tensor
        _keep(ctx, x, weight, bias, stride, padding)
        return y

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, stride, padding = _kept(ctx)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            grad_x = F.conv2d(grad, weight, None, stride, padding)
        if ctx.needs_input_grad[1] and _one_channel(weight, stride, padding, grad):  # type: ignore[attr-defined]
            grad_weight = _one_channel_weight_grad(grad, x).to(weight.dtype)
        elif ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            grad_weight = _convolution_backward(
                x, grad, weight, None, stride, padding, [1, 1], False, [0, 0], 1, [False, True, False]
            )[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:  # type: ignore[attr-defined]
            grad_bias = grad.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias, None, None, None


class _OneChannelConvolution(torch.autograd.Function):
    """A convolution reading a one-channel image: oneDNN's forward and input gradient, the weight gradient
    as one matrix product."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        stride: list[int],
        padding: list[int],
    ) -> Tensor:
        _keep(ctx, x, weight, bias, stride, padding)
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, stride, padding = _kept(ctx)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            grad_x = _convolution_backward(
                grad, x, weight, None, stride, padding, [1, 1], False, [0, 0], 1, [True, False, False]
            )[0]
        if ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            grad_weight = _one_channel_weight_grad(x, grad).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:  # type: ignore[attr-defined]
            grad_bias = grad.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias, None, None


def _routable(layer: UpConv | DownConv, x: Tensor) -> bool:
    """What both of jvae's CPU routes need: a CPU batch of images, one group, no dilation, zero padding."""
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        and layer.groups == 1
        and tuple(layer.dilation) == (1, 1)
        and layer.padding_mode == "zeros"
    )


class UpConv(nn.ConvTranspose2d):
    """nn.ConvTranspose2d (groups 1, no dilation or output padding) that runs on the convolution kernels on
    the CPU, casting to the autocast dtype when autocast is on as nn.ConvTranspose2d would."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if output_size is not None:
            return super().forward(x, output_size)
        return up_convolution(self, x, self.weight, self.bias)


def up_convolution(layer: UpConv, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """`layer`'s computation with the given weight and bias (a stacked model passes each model's slice)."""
    padding = cast(tuple[int, ...], layer.padding)  # a transposed convolution's padding is never a string
    if not (_routable(layer, x) and tuple(layer.output_padding) == (0, 0)):
        return F.conv_transpose2d(
            x, weight, bias, layer.stride, padding, layer.output_padding, layer.groups, layer.dilation
        )
    x, weight, bias = _autocast(x, weight, bias)
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, padding
    size = [
        x.shape[0],
        layer.out_channels,
        (x.shape[2] - 1) * sh - 2 * ph + kh,
        (x.shape[3] - 1) * sw - 2 * pw + kw,
    ]
    return _TransposedConvolution.apply(x, weight, bias, list(layer.stride), list(padding), size)


def _autocast(x: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """A layer's operands in the CPU autocast dtype when autocast is on, as PyTorch's own layers cast them."""
    if not torch.is_autocast_enabled("cpu"):
        return x, weight, bias
    dtype = torch.get_autocast_dtype("cpu")
    return x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)


class DownConv(nn.Conv2d):
    """nn.Conv2d whose weight gradient, when it reads a one-channel image on the CPU (the encoder's first
    layer on greyscale data), is one matrix product; everything else, and every other device, is
    nn.Conv2d unchanged."""

    def forward(self, x: Tensor) -> Tensor:
        return down_convolution(self, x, self.weight, self.bias)


def down_convolution(layer: DownConv, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """`layer`'s computation with the given weight and bias (a stacked model passes each model's slice)."""
    stride, padding = list(layer.stride), list(layer.padding)
    if not (_routable(layer, x) and _one_channel(weight, stride, padding, x)):  # type: ignore[arg-type]
        return layer._conv_forward(x, weight, bias)
    x, weight, bias = _autocast(x, weight, bias)
    return _OneChannelConvolution.apply(x, weight, bias, stride, padding)
