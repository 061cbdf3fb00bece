"""train.precision = "mixed": bfloat16 in the convolution bodies only, float32 in the fully connected layers, the
latent heads, the sampling and the loss; float32 throughout where the hardware has no bf16 arithmetic."""

from __future__ import annotations

import pytest
import torch

from jvae.base import devices
from jvae.modeling.builder import build_training
from jvae.modeling.checkpoint import read_checkpoint
from jvae.modeling.presets import load_preset

SHORT = ["--set", "train.steps=6", "--set", "train.log_every=3", "--set", "train.batch_size=16"]


def _dtypes(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.dtype]:
    """The dtype each named part's output has on one pass."""
    seen: dict[str, torch.dtype] = {}
    parts = {
        "first conv": model.encoder[0][0],
        "encoder linear": model.encoder[2],
        "mean head": model.mean_head,
        "discrete head": model.discrete_heads[0],
        "decoder input linear": model.latent_to_features[0],
        "last deconv": model.decoder[-1],
    }
    for name, part in parts.items():
        part.register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, out.dtype))
    posterior = model.encode(x)
    logits = model.decode_logits(posterior.sample(0.67, torch.Generator().manual_seed(0)))
    seen["posterior mean"], seen["logits"] = posterior.mean.dtype, logits.dtype
    return seen


def test_mixed_computes_the_convolutions_in_bf16_and_everything_else_in_float32(monkeypatch):
    monkeypatch.setattr(devices, "bf16_is_fast", lambda device: True)
    _, preset = load_preset("digits", ['train.precision="mixed"'])
    model = build_training(preset, torch.device("cpu")).model
    assert model.bf16_bodies
    seen = _dtypes(model, torch.rand(4, 1, 32, 32))
    assert seen["first conv"] == seen["last deconv"] == torch.bfloat16, seen
    others = {k: v for k, v in seen.items() if k not in ("first conv", "last deconv")}
    assert set(others.values()) == {torch.float32}, seen


def test_mixed_falls_back_to_float32_without_bf16_arithmetic_and_says_so(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "bf16_is_fast", lambda device: False)
    _, preset = load_preset("digits", ['train.precision="mixed"'])
    assert not build_training(preset, torch.device("cpu")).model.bf16_bodies
    mixed, plain = tmp_path / "mixed", tmp_path / "fp32"
    result = cli("train", "--preset", "digits", "--set", 'train.precision="mixed"', "--out", mixed, *SHORT)
    assert result.exit_code == 0, result.output
    assert "mixed falls back to float32" in result.output.splitlines()[0]
    assert cli("train", "--preset", "digits", "--out", plain, *SHORT).exit_code == 0
    first, second = read_checkpoint(mixed / "ckpt.pt").model, read_checkpoint(plain / "ckpt.pt").model
    assert all(torch.equal(first[name], second[name]) for name in first)  # the fp32 run, bit for bit


@pytest.mark.parametrize("stacked", [False, True])
def test_mixed_trains_single_runs_and_stacks_on_bf16_hardware(cli, tmp_path, monkeypatch, stacked):
    """Emulated bf16 on a CPU without it: slow, so a few steps; the run is finite and says it is mixed."""
    monkeypatch.setattr(devices, "bf16_is_fast", lambda device: True)
    seeds = ["--seeds", "0-1"] if stacked else []
    out = tmp_path / "run"
    result = cli(
        "train", "--preset", "digits", "--set", 'train.precision="mixed"', *seeds, "--out", out, *SHORT
    )
    assert result.exit_code == 0, result.output
    assert "mixed: bf16 convolution bodies" in result.output
    plain = tmp_path / "fp32"
    assert cli("train", "--preset", "digits", *seeds, "--out", plain, *SHORT).exit_code == 0
    for name in ["seed-0", "seed-1"] if stacked else ["."]:
        weights = read_checkpoint(out / name / "ckpt.pt").model
        reference = read_checkpoint(plain / name / "ckpt.pt").model
        assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in weights.values())
        moved = max(float((weights[k] - reference[k]).abs().max()) for k in weights)
        assert 0 < moved < 0.05, moved  # bf16 rounding in the convolutions, nothing more
