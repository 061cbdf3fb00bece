"""The fast training path computes what the plain fp32 path computes, and `jvae bench` reports real figures."""

from __future__ import annotations

import json
import resource

import pytest
import torch

from jvae.base.host_memory import pages_kept
from jvae.data import open_dataset
from jvae.modeling.builder import build_model
from jvae.modeling.presets import load_preset
from jvae.training.steps import Objective, Stepper

SMALL = ['data.source="generated"', "data.image_size=32", 'model.architecture="conv32"']


def _loss(preset, bf16: bool, channels_last: bool) -> torch.Tensor:
    torch.manual_seed(0)
    source = open_dataset(preset.data)
    stepper = Stepper.create(preset, source, torch.device("cpu"))
    model = stepper.model
    x = source.images(torch.arange(32), torch.device("cpu"))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    else:
        model = model.to(memory_format=torch.contiguous_format)
    objective = Objective(model, preset, len(source), bf16=bf16)
    loss, terms, _ = objective(x, None, 1, torch.Generator().manual_seed(5))
    return torch.stack([loss, terms.recon, terms.kl_cont.sum(), terms.kl_disc.sum()]).detach()


def test_bf16_channels_last_step_computes_the_fp32_loss_within_bf16_tolerance():
    _, preset = load_preset("quickstart", SMALL)
    eager = _loss(preset, bf16=False, channels_last=False)
    fast = _loss(preset, bf16=True, channels_last=True)
    laid_out = _loss(preset, bf16=False, channels_last=True)
    assert torch.allclose(eager, laid_out, rtol=1e-5, atol=1e-4)  # the layout alone changes nothing
    assert torch.allclose(eager, fast, rtol=2e-2, atol=5e-2), (eager, fast)  # bf16 has 8 mantissa bits
    assert not torch.equal(eager, fast)  # the fast path really ran in bf16


def test_precision_setting_chooses_the_path():
    source = open_dataset(load_preset("quickstart", SMALL)[1].data)
    for precision, expected in (("fp32", False), ("bf16", True)):
        _, preset = load_preset("quickstart", [*SMALL, f'train.precision="{precision}"'])
        assert Stepper.create(preset, source, torch.device("cpu")).bf16 is expected


def test_bench_prints_both_loops_encode_and_ratio_as_json(cli):
    result = cli(
        "bench",
        "--preset",
        "quickstart",
        *[a for s in SMALL for a in ("--set", s)],
        "--steps",
        "3",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--no-metrics",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in ("train", "baseline", "encode"):
        figures = report[key]
        assert figures["unit"] == "images/s" and 0 < figures["min"] <= figures["median"] <= figures["max"]
    assert report["ratio"] == report["train"]["median"] / report["baseline"]["median"]
    assert report["setting"]["batch_size"] == 64 and report["setting"]["repeats"] == 2
    assert all(value == value for value in report["losses"].values())  # finite losses from both loops


def test_bench_table_and_metrics_time(cli):
    result = cli(
        "bench",
        "--preset",
        "digits",
        "--batch-size",
        "32",
        "--steps",
        "2",
        "--repeats",
        "1",
        "--warmup",
        "0",
    )
    assert result.exit_code == 0, result.output
    assert "train: jvae / reference" in result.stdout and "metrics (evaluate --fast)" in result.stdout
    assert "batch 32" in result.stdout


def test_training_keeps_freed_pages_between_steps_and_returns_them_afterwards():
    def faults_of_five_48mb_tensors() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            torch.ones(12 << 20).sum()  # allocated, touched and freed, like a step's activations
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    with pages_kept() as tuned:
        faults_of_five_48mb_tensors()  # the first one brings the pages in
        inside = faults_of_five_48mb_tensors()
    outside = faults_of_five_48mb_tensors()
    if not tuned:
        pytest.skip("malloc is not glibc's here, or the environment tunes it")
    pages = 5 * (48 << 20) // resource.getpagesize()
    assert inside < pages // 20
    assert outside > pages // 2


@pytest.mark.parametrize("engine", [None, "kernels", "grouped"])
def test_bench_stack_prints_stacked_single_and_reference_figures(cli, engine, monkeypatch):
    monkeypatch.setenv("JVAE_THREADS", "2")  # two threads: the CPU's default engine runs models side by side
    chosen = ["--engine", engine] if engine else []
    args = [
        "bench",
        "--preset",
        "digits",
        "--batch-size",
        "16",
        "--steps",
        "2",
        "--repeats",
        "2",
        "--warmup",
        "1",
    ]
    result = cli(*args, "--stack", "3", *chosen, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["setting"]["models"] == 3 and report["setting"]["engine"] == (engine or "concurrent")
    for key in ("stacked", "single", "baseline"):
        assert len(report[key]["values"] if "values" in report[key] else [report[key]["median"]]) >= 1
        assert report[key]["median"] > 0
    assert report["stacked_over_single"] == pytest.approx(
        report["stacked"]["median"] / report["single"]["median"]
    )
    table = cli(*args, "--stack", "2")
    assert (
        table.exit_code == 0
        and "2 stacked models" in table.stdout
        and "stacked / single runs" in table.stdout
    )
    refused = cli(*args, "--engine", "grouped")
    assert refused.exit_code == 2 and "add --stack" in refused.output


def test_bench_layers_times_every_pass_of_every_layer_against_the_machine(cli, monkeypatch):
    args = ["bench", "--preset", "quickstart", *[a for s in SMALL for a in ("--set", s)]]
    args += ["--steps", "2", "--repeats", "1", "--warmup", "1", "--layers"]
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    profile = json.loads(result.stdout)
    parts = profile["parts"]
    model = build_model(load_preset("quickstart", SMALL)[1])
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    convolutions = [p for p in parts if " conv " in p["name"] or " deconv " in p["name"]]
    first = convolutions[0]["name"]
    assert first.startswith("enc.") and " conv 1>" in first  # the images' one channel in
    # Every convolution has its forward, weight gradient and (all but the first) input gradient.
    assert len(convolutions) == 3 * len(layers) - 1
    assert [p["passes"] for p in convolutions[:4]] == ["forward", "weight grad", "forward", "input grad"]
    for part in convolutions:
        assert part["unit"] == "GFLOP/s" and part["ms"] > 0 and part["work"] > 0 and part["peak"] > 0
        assert part["rate"] == pytest.approx(part["work"] / (part["ms"] * 1e6))
    weights = sum(p.numel() for p in model.parameters())
    (adam,) = [p for p in parts if p["name"].startswith("optimizer")]
    assert adam["work"] == 28 * weights and adam["unit"] == "GB/s"
    assert {"loss", "sampling"} <= {p["name"] for p in parts}
    assert profile["peak_gflops"]["float32"] > 0 and profile["step_ms"] > 0
    assert set(profile["phases_ms"]) >= {"forward", "backward", "optimizer"}
    monkeypatch.setenv("COLUMNS", "80")
    table = cli(*args)
    assert table.exit_code == 0 and "of the float32 peak" in table.stdout
    assert all(len(line) <= 80 for line in table.stdout.splitlines())
    refused = cli("bench", "--preset", "dsprites-factor-vae", "--layers", "--steps", "1")
    assert refused.exit_code != 0 and "second network" in refused.output and "Traceback" not in refused.output
