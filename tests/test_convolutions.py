"""UpConv and DownConv give nn.ConvTranspose2d's and nn.Conv2d's values and gradients on every CPU route:
transposed convolutions on convolution kernels, the image-drawing layer as a matrix product, and the weight
gradients of one-channel layers as matrix products."""

from __future__ import annotations

import pytest
import torch

from jvae.fast import as_stock, swap_in
from jvae.fast.convolutions import DownConv, UpConv
from jvae.modeling.model import JointVAE

# (in, out, side): the 64x64 decoder's layers, the layer drawing an RGB image, and odd sizes.
LAYERS = [(64, 64, 4), (64, 32, 8), (32, 32, 16), (32, 1, 32), (32, 3, 32), (16, 1, 5), (8, 2, 7)]


def pair(c_in: int, c_out: int) -> tuple[torch.nn.ConvTranspose2d, UpConv]:
    torch.manual_seed(c_in * 100 + c_out)
    reference = torch.nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
    ours = UpConv(c_in, c_out, 4, stride=2, padding=1)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def run(module: torch.nn.Module, x: torch.Tensor, bf16: bool = False) -> list[torch.Tensor]:
    """Output, input gradient and parameter gradients for a fixed random output gradient."""
    module.zero_grad()
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = module(x)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (y.float() * weights).sum().backward()
    return [y.detach().float(), x.grad, module.weight.grad, module.bias.grad]


@pytest.mark.parametrize("c_in,c_out,side", LAYERS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_values_and_gradients_equal_conv_transpose(c_in, c_out, side, channels_last):
    reference, ours = pair(c_in, c_out)
    x = torch.randn(3, c_in, side, side)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for expected, got in zip(run(reference, x), run(ours, x)):
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


@pytest.mark.parametrize("c_in,c_out,side", [(32, 32, 16), (32, 1, 32)])
def test_under_bf16_autocast_it_matches_to_bf16_precision_and_returns_bf16(c_in, c_out, side):
    reference, ours = pair(c_in, c_out)
    x = torch.randn(4, c_in, side, side).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ours(x).dtype == torch.bfloat16
    exact = run(reference, x)
    for expected, got in zip(exact, run(ours, x, bf16=True)):
        scale = expected.abs().max().item()
        assert (got - expected).abs().max().item() < 0.03 * scale
    for got in run(ours, x, bf16=True)[2:]:
        assert got.dtype == torch.float32  # the parameters' gradients stay in their own precision


def test_the_model_keeps_conv_transpose_parameters_and_checkpoint_keys():
    model = swap_in(JointVAE(64, 1, 6, [3]))
    ups = [m for m in model.decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert ups and all(isinstance(m, UpConv) for m in ups)
    assert [k for k in model.state_dict() if k.startswith("decoder.")] == [
        f"decoder.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias")
    ]
    with torch.no_grad():
        x = torch.rand(2, 1, 64, 64)
        assert model.eval()(x)[0].shape == (2, 1, 64, 64)


@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (5, 1, 2), (2, 2, 0)])
def test_other_kernel_shapes_take_the_general_route_and_agree(kernel, stride, padding):
    torch.manual_seed(0)
    reference = torch.nn.ConvTranspose2d(8, 4, kernel, stride=stride, padding=padding)
    ours = UpConv(8, 4, kernel, stride=stride, padding=padding)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 8, 6, 6)
    for expected, got in zip(run(reference, x), run(ours, x)):
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("c_in,c_out,side", [(1, 32, 64), (1, 32, 32), (1, 5, 10), (3, 32, 64), (1, 8, 7)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_down_conv_values_and_gradients_equal_conv2d(c_in, c_out, side, channels_last):
    torch.manual_seed(c_in + c_out)
    reference = torch.nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)
    ours = DownConv(c_in, c_out, 4, stride=2, padding=1)
    ours.load_state_dict(reference.state_dict())
    x = torch.rand(3, c_in, side, side)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        ours = ours.to(memory_format=torch.channels_last)
    for expected, got in zip(run(reference, x), run(ours, x)):
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())
    bf16 = run(ours, x, bf16=True)
    for expected, got in zip(run(reference, x), bf16):
        assert (got - expected).abs().max().item() < 0.03 * expected.abs().max().item()
    assert [g.dtype for g in bf16[2:]] == [torch.float32, torch.float32]


def test_stock_layers_switch_the_model_back_to_conv_transpose_kernels_with_the_same_result():
    torch.manual_seed(0)
    model = swap_in(JointVAE(64, 1, 6, [3])).eval()
    assert len([m for m in model.modules() if isinstance(m, (UpConv, DownConv))]) == 8
    latent = torch.rand(4, 9)
    with torch.no_grad():
        ours = model.decode_logits(latent)
        stock = as_stock(model).decode_logits(latent)
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert len(layers) == 8 and not any(isinstance(m, (UpConv, DownConv)) for m in layers)
    assert not any(m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU))
    assert torch.allclose(ours, stock, atol=1e-5)
