"""jvae's own kernels (`jvae.fast`) against stock PyTorch (JVAE_STOCK=1): real training steps of a single
run and of stacks give the same losses within float rounding, and a stack survives a layer type its
hand-written walk does not know."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jvae.data import open_dataset
from jvae.fast import STOCK_ENV
from jvae.fast.convolutions import DownConv, UpConv
from jvae.fast.stacked_layers import StackedNetwork
from jvae.modeling.model import JointVAE
from jvae.modeling.presets import Preset, load_preset, with_seed
from jvae.modeling.stacked_network import FunctionalStack
from jvae.training.stacking import stack_steps
from jvae.training.steps import Stepper

STEPS = 4
CPU = torch.device("cpu")


def _preset(*sets: str) -> Preset:
    return load_preset("digits", ["train.precision=fp32", "train.batch_size=32", *sets])[1]


def _single_losses(preset: Preset) -> list[float]:
    stepper = Stepper.create(preset, open_dataset(preset.data), CPU)
    return [stepper(index)[0].loss.item() for index in range(STEPS)]


def _stack_losses(presets: list[Preset], engine: str) -> list[list[float]]:
    steps = stack_steps(presets, open_dataset(presets[0].data), CPU, engine)
    return [[terms.loss.item() for terms, _ in steps.step_members(index)] for index in range(STEPS)]


@pytest.mark.parametrize("sets", [[], ['model.architecture="mlp"']])
def test_stock_layers_train_a_run_to_the_same_losses(monkeypatch, sets):
    preset = _preset(*sets)
    fast = _single_losses(preset)
    monkeypatch.setenv(STOCK_ENV, "1")
    stock = _single_losses(preset)
    assert stock == pytest.approx(fast, rel=1e-4)
    assert len(set(fast)) == STEPS  # the runs trained: every step's loss is its own


@pytest.mark.parametrize("engine", ["kernels", "grouped"])
def test_stock_stacks_train_to_the_same_losses(monkeypatch, engine):
    monkeypatch.setenv("JVAE_THREADS", "1")
    presets = [with_seed(_preset(), seed) for seed in (0, 1)]
    fast = _stack_losses(presets, engine)
    monkeypatch.setenv(STOCK_ENV, "1")
    stock = _stack_losses(presets, engine)
    for got, expected in zip(stock, fast):
        assert got == pytest.approx(expected, rel=1e-4)


def test_the_switch_decides_the_layers_and_the_stacked_network(monkeypatch):
    presets = [with_seed(_preset(), seed) for seed in (0, 1)]
    source = open_dataset(presets[0].data)
    fast = stack_steps(presets, source, CPU, "kernels")
    layers = [type(m) for m in fast.network.template.modules()]  # type: ignore[union-attr]
    assert isinstance(fast.network, StackedNetwork) and DownConv in layers and UpConv in layers  # type: ignore[union-attr]
    monkeypatch.setenv(STOCK_ENV, "1")
    stock = stack_steps(presets, source, CPU, "kernels")
    layers = [type(m) for m in stock.network.template.modules()]  # type: ignore[union-attr]
    assert isinstance(stock.network, FunctionalStack)  # type: ignore[union-attr]
    assert nn.Conv2d in layers and DownConv not in layers and UpConv not in layers


class _Scaled(nn.Module):
    """A layer type the hand-written walk has never heard of, with a parameter of its own."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


@pytest.mark.parametrize("grouped", [False, True])
def test_a_new_layer_type_stacks_through_the_generic_path(grouped):
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = JointVAE(32, 1, 4, [3])
        model.latent_to_features.insert(1, _Scaled(model.latent_to_features[0].out_features))
        model.encoder.insert(0, nn.Hardtanh())
        models.append(model)
    network = StackedNetwork(models, grouped)
    images = [torch.rand(5, 1, 32, 32) for _ in models]
    posteriors = network.encode(network.images(images))
    latent = torch.stack([p.mean.new_zeros(5, 7).normal_() for p in posteriors])
    logits = network.decode_logits(latent)
    for model, x, posterior, code, got in zip(models, images, posteriors, latent, logits):
        alone = model.encode(x)
        torch.testing.assert_close(posterior.mean, alone.mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got, model.decode_logits(code), rtol=1e-5, atol=1e-5)
