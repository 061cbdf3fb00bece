"""`jvae train` end to end: real training on generated dSprites, checkpoints, resume, signals and refusals."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jvae.modeling.checkpoint import FORMAT, load_checkpoint, read_checkpoint
from jvae.modeling.presets import load_preset
from jvae.training import trainer

RECORD_KEYS = {
    "step",
    "epoch",
    "loss",
    "recon",
    "kl_cont",
    "kl_disc",
    "capacity_cont",
    "capacity_disc",
    "lr",
    "temperature",
    "images_per_sec",
}


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _train_quickstart(folder: Path, sets: list[str]):
    from typer.testing import CliRunner

    from jvae.cli import app

    run = folder / "run"
    args = ["train", "--preset", "quickstart", *[f"--set={s}" for s in sets], "--out", str(run)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return run, result


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    """The shipped quickstart, in full, through the real CLI: what a newcomer runs first (minutes: slow)."""
    return _train_quickstart(tmp_path_factory.mktemp("quick"), [])


BRIEF = ["train.steps=20", "train.log_every=10"]


@pytest.fixture(scope="module")
def quickstart_brief(tmp_path_factory):
    """The shipped quickstart's network and data through the real CLI, 20 steps: what a run folder holds."""
    return _train_quickstart(tmp_path_factory.mktemp("brief"), BRIEF)


@pytest.mark.slow
def test_quickstart_loss_falls_and_kl_tracks_capacity(quickstart_run):
    run, result = quickstart_run
    preset = load_preset("quickstart")[1]
    steps, every = preset.train.steps, preset.train.log_every
    assert f"trained quickstart to step {steps}" in result.stdout
    records = read_metrics(run)
    assert [r["step"] for r in records] == list(range(every, steps + 1, every))
    assert all(set(r) >= RECORD_KEYS for r in records)
    assert all(len(r["kl_cont"]) == 6 and len(r["kl_disc"]) == 1 and r["images_per_sec"] > 0 for r in records)
    assert records[-1]["recon"] < 0.25 * records[0]["recon"]
    assert records[-1]["loss"] < 0.25 * records[0]["loss"]
    stop = preset.loss.continuous_capacity.stop
    settled = [r for r in records if r["step"] >= preset.loss.continuous_capacity.steps]
    assert len(settled) >= 10
    for r in settled[-10:]:  # once the schedule has caught up, each KL holds at its capacity
        assert r["capacity_cont"] == stop and r["capacity_disc"] == pytest.approx(math.log(3))  # clipped
        assert sum(r["kl_cont"]) == pytest.approx(stop, rel=0.1)
        # log 3 is also the most a 3-way variable's KL can be (a one-hot posterior), so it nears it from below
        assert sum(r["kl_disc"]) == pytest.approx(math.log(3), rel=0.15)


def test_paper_gamma_holds_kl_at_a_rising_capacity(tmp_path, small):
    """With dSprites' gamma of 150 both KL terms follow their capacity from the first steps."""
    overrides = [*small, "train.steps=200", "train.lr=5e-4"]
    overrides += ["loss.continuous_capacity.stop=12", "loss.continuous_capacity.steps=1500"]
    overrides += ["loss.discrete_capacity.steps=1500"]
    for kind in ("continuous", "discrete"):  # a constant 150 from the first step: no warm-up of the weight
        overrides += [f"loss.{kind}_capacity.gamma=150", f"loss.{kind}_capacity.gamma_start=150"]
    _, preset = load_preset("quickstart", overrides)
    trainer.train(preset, "quickstart", tmp_path / "run")
    records = read_metrics(tmp_path / "run")
    assert records[-1]["recon"] < 0.5 * records[0]["recon"]
    for r in records[5:]:
        assert sum(r["kl_cont"]) == pytest.approx(r["capacity_cont"], abs=0.15 * r["capacity_cont"] + 0.05)
        assert sum(r["kl_disc"]) == pytest.approx(r["capacity_disc"], abs=0.15 * r["capacity_disc"] + 0.02)


def test_run_directory_holds_a_self_describing_checkpoint(quickstart_brief):
    run, _ = quickstart_brief
    payload = torch.load(run / "ckpt.pt", weights_only=True)  # the file as other programs read it
    preset = load_preset("quickstart", BRIEF)[1]
    assert payload["format"] == FORMAT and payload["format_version"] == 2 and payload["step"] == 20
    assert payload["preset"] == preset.model_dump(mode="json") and preset.train.steps == 20
    assert {"model", "optimizer", "rng", "jvae_version", "torch_version", "unit_kl"} <= set(payload)
    assert len(payload["unit_kl"]["continuous"]) == 6
    loaded = load_checkpoint(run / "ckpt.pt")
    assert not loaded.model.training and loaded.preset.model.continuous == 6
    assert (run / "preset.toml").read_text().startswith("description")


def test_the_first_line_names_the_precision_and_the_quickstart_trains_in_fp32(quickstart_brief):
    run, result = quickstart_brief
    assert "on cpu (fp32)" in result.output
    assert read_checkpoint(run / "ckpt.pt").preset["train"]["precision"] == "fp32"


def test_training_traversal_gif_has_a_row_per_unit_and_loops(quickstart_brief):
    run, _ = quickstart_brief
    gif = Image.open(run / "traversals.gif")
    assert gif.is_animated and gif.n_frames == 18 and gif.info.get("loop") == 0
    assert gif.size[1] == 2 + 7 * (64 + 2)  # 6 continuous units and one discrete variable
    frames = []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("L"), dtype=np.int16))
    assert np.abs(frames[0] - frames[9]).mean() > 0.5  # the traversal moves something


def _centre_and_area(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    grid = torch.arange(images.shape[-1], dtype=torch.float32)
    area = images.sum((-1, -2))
    return (images.sum(-2) * grid).sum(-1) / area, (images.sum(-1) * grid).sum(-1) / area, area


@pytest.mark.slow
def test_quickstart_top_units_move_the_sprite(quickstart_run):
    """The traversal means something: its top units move the sprite across and down, and resize it."""
    from jvae.data.dsprites import GeneratedDSprites
    from jvae.modeling.latents import DEFAULT_RANGE, Unit, set_unit

    run, _ = quickstart_run
    loaded = load_checkpoint(run / "ckpt.pt")
    model, kl = loaded.model, loaded.unit_kl["continuous"]
    factors = np.array([[0, 3, 0, 16, 16], [1, 3, 5, 10, 22], [2, 4, 10, 22, 10], [0, 5, 20, 16, 16]])
    with torch.no_grad():
        base = model.encode(GeneratedDSprites(1, 64).observations(factors, torch.device("cpu"))).mode()
        moves = []
        for unit in sorted(range(6), key=lambda i: -kl[i])[:3]:
            low, high = (
                model.decode(set_unit(base, model, Unit("continuous", unit), v))[:, 0] for v in DEFAULT_RANGE
            )
            (x0, y0, a0), (x1, y1, a1) = _centre_and_area(low), _centre_and_area(high)
            moves.append(
                (
                    (x1 - x0).mean().abs().item(),
                    (y1 - y0).mean().abs().item(),
                    (a1 / a0).log().mean().abs().item(),
                )
            )
    assert max(m[0] for m in moves) > 8  # some unit moves the sprite at least 8 px horizontally
    assert max(m[1] for m in moves) > 8  # and some unit vertically
    assert max(m[2] for m in moves) > 0.3  # and some unit changes its size by a third or more


def test_sigint_writes_a_checkpoint_exits_cleanly_and_resumes(tmp_path, small):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "jvae", "train", "--preset", "quickstart", "--out", str(run)]
    sets = [f"--set={s}" for s in [*small, "train.steps=100000"]]
    process = subprocess.Popen([*args, *sets], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith("step 20/"):
            break
    process.send_signal(signal.SIGINT)
    stdout, rest = process.communicate(timeout=120)
    assert process.returncode == 130, "".join(lines) + rest
    assert "interrupted at step" in rest and f"jvae train --resume {run}" in rest
    assert "Traceback" not in rest
    step = read_checkpoint(run / "ckpt.pt").step
    assert step >= 20
    done = subprocess.run(
        [sys.executable, "-m", "jvae", "train", "--resume", str(run), f"--set=train.steps={step + 10}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert read_checkpoint(run / "ckpt.pt").step == step + 10
    assert (run / "traversals.gif").exists()


def test_sigterm_also_checkpoints(tmp_path, small):
    run = tmp_path / "run"
    sets = [f"--set={s}" for s in [*small, "train.steps=100000"]]
    process = subprocess.Popen(
        [sys.executable, "-m", "jvae", "train", "--preset", "quickstart", "--out", str(run), *sets],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in process.stderr:
        if line.startswith("step 10/"):
            break
    process.terminate()
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 143 and "interrupted at step" in rest
    assert read_checkpoint(run / "ckpt.pt").step >= 10


class _Planted:
    """An object whose unpickling would create a file: proof of code execution if it ever appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_foreign_and_damaged_checkpoints_are_refused_without_running_them(cli, tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil"
    evil.mkdir()
    torch.save({"format": FORMAT, "format_version": 1, "x": _Planted(marker)}, evil / "ckpt.pt")
    result = cli("train", "--resume", evil)
    assert result.exit_code == 1 and "refused: not a jvae checkpoint" in result.stderr
    assert not marker.exists()

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "ckpt.pt").write_bytes(os.urandom(2000))
    result = cli("train", "--resume", damaged)
    assert result.exit_code == 1 and "damaged or not a PyTorch checkpoint" in result.stderr

    other = tmp_path / "other"
    other.mkdir()
    torch.save(torch.nn.Linear(2, 2).state_dict(), other / "ckpt.pt")
    result = cli("train", "--resume", other)
    assert result.exit_code == 1 and "not a jvae checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_existing_run_is_never_overwritten(cli, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "ckpt.pt").write_bytes(b"precious")
    result = cli("train", "--preset", "quickstart", "--out", run)
    assert result.exit_code == 1 and "already holds a run" in result.stderr
    assert (run / "ckpt.pt").read_bytes() == b"precious"


def test_bad_override_exits_2_and_writes_nothing(cli, tmp_path):
    result = cli("train", "--preset", "quickstart", "--set", "train.batch_size=0", "--out", tmp_path / "run")
    assert result.exit_code == 2 and re.search(r"train\.batch_size: .*\b1\b.*\(got 0\)", result.stderr)
    assert not (tmp_path / "run").exists()


def test_missing_data_is_one_clear_line(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("JVAE_DATA", raising=False)
    result = cli("train", "--preset", "dsprites", "--out", tmp_path / "run")
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(
        "error: data not found: put dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_train_refuses_a_file_or_a_folder_with_other_things_in_it(cli, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    result = cli("train", "--preset", "quickstart", "--out", afile)
    assert result.exit_code == 1 and "not an empty folder" in result.stderr and afile.read_text() == "mine"
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "metrics.jsonl").write_text("my notes\n")
    result = cli("train", "--preset", "quickstart", "--out", busy)
    assert result.exit_code == 1 and (busy / "metrics.jsonl").read_text() == "my notes\n"


def test_resume_rejects_changes_that_would_break_the_continuation(cli, tmp_path):
    result = cli("train", "--resume", tmp_path, "--out", tmp_path / "x")
    assert result.exit_code == 2 and "leave out --out" in result.stderr
    result = cli("train", "--resume", tmp_path, "--set", "train.seed=3")
    assert result.exit_code == 2 and "keep the run exact" in result.stderr


def test_resume_survives_a_metrics_line_cut_short_by_a_crash(tmp_path, small):
    _, preset = load_preset("quickstart", [*small, "train.steps=20"])
    calls = iter(range(1000))
    trainer.train(preset, "quickstart", tmp_path / "run", should_stop=lambda: next(calls) >= 12)
    with open(tmp_path / "run" / "metrics.jsonl", "a") as log:
        log.write('{"step": 15, "lo')
    assert trainer.train(preset, "quickstart", tmp_path / "run", resume=True).step == 20
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [10, 20]


def test_unwritable_output_is_one_line(cli, digits_run):
    result = cli("presets", "show", "quickstart")
    assert result.exit_code == 0
    result = cli("sample", digits_run / "ckpt.pt", "--out", "/sys/jvae-test.png", "--n", "1")
    assert (
        result.exit_code == 1
        and result.stderr.startswith("error: /sys/")
        and "Traceback" not in result.stderr
    )
