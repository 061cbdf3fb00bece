"""Learning-rate and Gumbel-Softmax temperature schedules: the values they document, what a run logs and
uses, resuming mid-schedule, and refused settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from jvae.modeling.model import Posterior
from jvae.modeling.presets import load_preset
from jvae.modeling.schedules import learning_rate, temperature
from jvae.training import trainer


def preset_with(*overrides: str):
    return load_preset("quickstart", list(overrides))[1]


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_constant_learning_rate_is_todays_behaviour():
    train = preset_with("train.lr=0.002", "train.steps=100").train
    assert [learning_rate(train, s, 100) for s in (1, 50, 100, 500)] == [0.002] * 4


def test_cosine_with_warmup_rises_then_falls_to_lr_min_and_stays():
    train = preset_with(
        "train.lr=0.002",
        "train.steps=1100",
        'train.lr_schedule="cosine"',
        "train.lr_warmup_steps=100",
        "train.lr_min=0.0002",
    ).train
    total = 1100
    assert learning_rate(train, 1, total) == pytest.approx(0.002 / 100)  # first step of the warm-up
    assert learning_rate(train, 50, total) == pytest.approx(0.001)  # half-way up
    assert learning_rate(train, 100, total) == pytest.approx(0.002)  # the peak, where warm-up ends
    assert learning_rate(train, 600, total) == pytest.approx(0.0011)  # half-way down: (lr + lr_min) / 2
    assert learning_rate(train, 1100, total) == pytest.approx(0.0002)  # the last step
    assert learning_rate(train, 5000, total) == pytest.approx(0.0002)  # past the end (a longer resume)
    falling = [learning_rate(train, s, total) for s in range(100, 1101)]
    assert all(a >= b for a, b in zip(falling, falling[1:], strict=False))


def test_warmup_alone_then_constant():
    train = preset_with("train.lr=0.001", "train.steps=500", "train.lr_warmup_steps=200").train
    assert learning_rate(train, 100, 500) == pytest.approx(0.0005)
    assert learning_rate(train, 200, 500) == learning_rate(train, 499, 500) == pytest.approx(0.001)


def test_temperature_anneals_exponentially_or_linearly_and_holds():
    model = preset_with(
        "model.temperature=0.5", "model.temperature_start=2.0", "model.temperature_steps=1000"
    ).model
    assert temperature(model, 0) == pytest.approx(2.0)
    assert temperature(model, 500) == pytest.approx(1.0)  # geometric mean of 2 and 0.5
    assert temperature(model, 1000) == pytest.approx(0.5)
    assert temperature(model, 99999) == pytest.approx(0.5)
    linear = model.model_copy(update={"temperature_curve": "linear"})
    assert temperature(linear, 500) == pytest.approx(1.25)
    assert temperature(linear, 250) == pytest.approx(1.625)
    constant = preset_with().model
    assert temperature(constant, 0) == temperature(constant, 10**6) == 0.67


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (['train.lr_schedule="step"'], "train.lr_schedule"),
        (["train.lr_warmup_steps=-1"], "train.lr_warmup_steps"),
        (["train.steps=300", "train.lr_warmup_steps=300"], "must be fewer than train.steps"),
        (['train.lr_schedule="cosine"', "train.lr_min=0.5"], "must not exceed train.lr"),
        (["model.temperature_start=0"], "model.temperature_start"),
        (["model.temperature_start=1.0"], "needs model.temperature_steps"),
        (["model.temperature_steps=100"], "needs model.temperature_start"),
        (["model.temperature_start=1.0", "model.temperature_steps=0"], "model.temperature_steps"),
        (
            ["model.temperature_start=1.0", "model.temperature_steps=9", 'model.temperature_curve="cubic"'],
            "curve",
        ),
    ],
)
def test_bad_schedule_values_are_one_line_and_exit_2(cli, tmp_path, override, message):
    sets = [item for pair in override for item in ("--set", pair)]
    result = cli("train", "--preset", "quickstart", *sets, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_run_uses_and_logs_the_scheduled_values(monkeypatch, tmp_path, small):
    """The sampler sees each step's temperature and Adam each step's learning rate; both are logged."""
    _, preset = load_preset(
        "quickstart",
        [
            *small,
            "train.steps=40",
            'train.lr_schedule="cosine"',
            "train.lr_warmup_steps=10",
            "model.temperature_start=2.0",
            "model.temperature_steps=30",
        ],
    )
    seen: list[float] = []
    original = Posterior.sample

    def spy(self, temp, *args, **kwargs):
        seen.append(temp)
        return original(self, temp, *args, **kwargs)

    monkeypatch.setattr(Posterior, "sample", spy)
    trainer.train(preset, "quickstart", tmp_path / "run")
    assert seen[:40] == pytest.approx([temperature(preset.model, s) for s in range(1, 41)])
    logged = records(tmp_path / "run")
    assert [r["step"] for r in logged] == [10, 20, 30, 40]
    for r in logged:
        assert r["lr"] == pytest.approx(learning_rate(preset.train, r["step"], 40))
        assert r["temperature"] == pytest.approx(temperature(preset.model, r["step"]))
    assert logged[0]["lr"] == pytest.approx(preset.train.lr)  # the warm-up's last step
    assert logged[-1]["lr"] == pytest.approx(0.0) and logged[-1]["temperature"] == pytest.approx(0.67)
    optimiser = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)["optimizer"]
    assert optimiser["param_groups"][0]["lr"] == pytest.approx(learning_rate(preset.train, 40, 40))


def test_capacity_weight_ramps_from_gamma_start_to_gamma_and_holds():
    schedule = preset_with(
        "loss.continuous_capacity.gamma=30",
        "loss.continuous_capacity.gamma_start=3",
        "loss.continuous_capacity.gamma_steps=1000",
    ).loss.continuous_capacity
    assert [schedule.weight(s) for s in (0, 500, 1000, 10**6)] == pytest.approx([3.0, 16.5, 30.0, 30.0])
    constant = load_preset("dsprites")[1].loss.discrete_capacity  # no gamma_start: the weight is gamma
    assert constant.weight(0) == constant.weight(10**6) == constant.gamma == 150.0


def test_the_loss_uses_the_ramped_weight():
    """|KL - C| enters the JointVAE loss with the step's weight: the same codes cost more as gamma rises."""
    from jvae.kinds import objective
    from jvae.modeling.builder import build_model

    preset = preset_with(
        "data.image_size=32",
        'model.architecture="conv32"',
        "loss.continuous_capacity.gamma=40",
        "loss.continuous_capacity.gamma_start=0",
        "loss.continuous_capacity.gamma_steps=100",
        "loss.discrete_capacity.gamma=0",
        "loss.discrete_capacity.gamma_start=0",
    )
    torch.manual_seed(0)
    model = build_model(preset).eval()
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        posterior = model.encode(x)
        logits = model.decode_logits(posterior.mode())
        terms = {s: objective(logits, x, posterior, s, preset.loss) for s in (1, 50, 100, 400)}
    gap = {s: abs(float(t.kl_cont.sum()) - t.capacity_cont) for s, t in terms.items()}
    for s, t in terms.items():
        expected = float(t.recon) + preset.loss.continuous_capacity.weight(s) * gap[s]
        assert float(t.loss) == pytest.approx(expected, rel=1e-5)
    assert float(terms[1].loss) == pytest.approx(float(terms[1].recon) + 0.4 * gap[1], rel=1e-5)


def test_a_lone_gamma_start_is_refused(cli, tmp_path):
    result = cli(
        "train",
        "--preset",
        "dsprites",
        "--set",
        "loss.discrete_capacity.gamma_start=1",
        "--out",
        tmp_path / "r",
    )
    assert result.exit_code == 2 and "gamma_start and gamma_steps go together" in result.stderr
