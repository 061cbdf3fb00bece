"""`jvae train` end to end: real training on generated dSprites, checkpoints, resume, signals and refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jvae_cli import trainer
from jvae_cli.checkpoint import FORMAT, load_checkpoint, read_checkpoint
from jvae_cli.presets import load_preset

RECORD_KEYS = {
    "step",
    "epoch",
    "loss",
    "recon",
    "kl_cont",
    "kl_disc",
    "capacity_cont",
    "capacity_disc",
    "images_per_sec",
}


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    """Quickstart for 300 steps through the real CLI (capacity schedule as shipped)."""
    from typer.testing import CliRunner

    from jvae_cli.cli import app

    run = tmp_path_factory.mktemp("quick") / "run"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--preset",
            "quickstart",
            "--set",
            "train.steps=300",
            "--set",
            "train.log_every=25",
            "--out",
            str(run),
        ],
    )
    assert result.exit_code == 0, result.output
    return run, result


def test_quickstart_loss_falls_and_kl_tracks_capacity(quickstart_run):
    run, result = quickstart_run
    assert "trained quickstart to step 300" in result.stdout
    records = read_metrics(run)
    assert [r["step"] for r in records] == list(range(25, 301, 25))
    assert all(set(r) >= RECORD_KEYS for r in records)
    assert all(len(r["kl_cont"]) == 6 and len(r["kl_disc"]) == 1 and r["images_per_sec"] > 0 for r in records)
    assert records[-1]["recon"] < 0.5 * records[0]["recon"]
    assert records[-1]["loss"] < 0.5 * records[0]["loss"]
    for r in records[-4:]:
        assert sum(r["kl_cont"]) == pytest.approx(r["capacity_cont"], rel=0.2, abs=0.3)
        assert sum(r["kl_disc"]) == pytest.approx(r["capacity_disc"], rel=0.3, abs=0.05)
    assert records[-1]["capacity_cont"] == pytest.approx(25.0 * 300 / 2000)


def test_run_directory_holds_a_self_describing_checkpoint(quickstart_run):
    run, _ = quickstart_run
    payload = read_checkpoint(run / "ckpt.pt")
    assert payload["format"] == FORMAT and payload["format_version"] == 1 and payload["step"] == 300
    assert payload["preset"] == load_preset("quickstart", ["train.steps=300", "train.log_every=25"])[
        1
    ].model_dump(mode="json")
    assert {"model", "optimizer", "rng", "jvae_version", "torch_version", "unit_kl"} <= set(payload)
    assert len(payload["unit_kl"]["continuous"]) == 6
    loaded = load_checkpoint(run / "ckpt.pt")
    assert not loaded.model.training and loaded.preset.model.continuous == 6
    assert (run / "preset.toml").read_text().startswith("description")


def test_training_traversal_gif_has_a_row_per_unit_and_loops(quickstart_run):
    run, _ = quickstart_run
    gif = Image.open(run / "traversals.gif")
    assert gif.is_animated and gif.n_frames == 18 and gif.info.get("loop") == 0
    height = gif.size[1]
    assert height == 2 + 7 * (64 + 2)  # 6 continuous units and one discrete variable
    frames = []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("L"), dtype=np.int16))
    assert np.abs(frames[0] - frames[9]).mean() > 0.5  # the traversal moves something


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, small):
    _, preset = load_preset("quickstart", [*small, "train.steps=30", "train.checkpoint_every=7"])
    whole = trainer.train(preset, "quickstart", tmp_path / "whole")
    assert not whole.interrupted and whole.step == 30

    calls = iter(range(1000))
    stopped = trainer.train(preset, "quickstart", tmp_path / "split", should_stop=lambda: next(calls) >= 12)
    assert stopped.interrupted and stopped.step == 12
    assert read_checkpoint(tmp_path / "split" / "ckpt.pt")["step"] == 12
    resumed = trainer.train(preset, "quickstart", tmp_path / "split", resume=True)
    assert resumed.step == 30 and not resumed.interrupted

    a = read_checkpoint(tmp_path / "whole" / "ckpt.pt")
    b = read_checkpoint(tmp_path / "split" / "ckpt.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert read_metrics(tmp_path / "whole")[-1] == {
        **read_metrics(tmp_path / "split")[-1],
        "images_per_sec": read_metrics(tmp_path / "whole")[-1]["images_per_sec"],
    }
    assert [r["step"] for r in read_metrics(tmp_path / "split")] == [10, 20, 30]


def test_sigint_writes_a_checkpoint_exits_cleanly_and_resumes(tmp_path, small):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "jvae_cli", "train", "--preset", "quickstart", "--out", str(run)]
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
    step = read_checkpoint(run / "ckpt.pt")["step"]
    assert step >= 20
    done = subprocess.run(
        [sys.executable, "-m", "jvae_cli", "train", "--resume", str(run), f"--set=train.steps={step + 10}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert read_checkpoint(run / "ckpt.pt")["step"] == step + 10
    assert (run / "traversals.gif").exists()


def test_sigterm_also_checkpoints(tmp_path, small):
    run = tmp_path / "run"
    sets = [f"--set={s}" for s in [*small, "train.steps=100000"]]
    process = subprocess.Popen(
        [sys.executable, "-m", "jvae_cli", "train", "--preset", "quickstart", "--out", str(run), *sets],
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
    assert read_checkpoint(run / "ckpt.pt")["step"] >= 10


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
    assert (
        result.exit_code == 2
        and "train.batch_size: Input should be greater than or equal to 1" in result.stderr
    )
    assert not (tmp_path / "run").exists()


def test_missing_data_is_one_clear_line(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("JVAE_DATA", raising=False)
    result = cli("train", "--preset", "dsprites", "--out", tmp_path / "run")
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(
        "error: data not found: put dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    )
    assert len(result.stderr.strip().splitlines()) == 1
