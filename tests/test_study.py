"""Watching runs and running studies: callbacks and trackers read back from their own files, evaluations
during training, checkpoint history, curves, sweeps (local and through submitit) that resume, and compare."""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from jvae.base.callbacks import Callback, RunInfo
from jvae.modeling.checkpoint import read_checkpoint
from jvae.modeling.presets import load_preset
from jvae.training import trainer

TINY = ["train.steps=20", "train.log_every=10", "train.checkpoint_every=10"]
WATCHED = [*TINY, "train.eval_every=10", "train.eval_images=64"]


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def on_start(self, run: RunInfo) -> None:
        self.calls.append(("start", run.start_step))

    def on_log(self, step, record) -> None:
        self.calls.append(("log", step))

    def on_checkpoint(self, step, path) -> None:
        self.calls.append(("checkpoint", step))

    def on_evaluation(self, step, record, images) -> None:
        assert images["traversal"].ndim == 3 and images["reconstruction"].shape[-1] == 3
        self.calls.append(("evaluation", step))

    def on_end(self, run, step, interrupted) -> None:
        self.calls.append(("end", step))


def test_callbacks_hear_every_event_and_evaluations_do_not_change_the_weights(tmp_path):
    name, plain = load_preset("digits", TINY)
    _, watched = load_preset("digits", [*WATCHED, "train.keep_checkpoints=1"])
    trainer.train(plain, name, tmp_path / "plain")
    recorder = Recorder()
    trainer.train(watched, name, tmp_path / "watched", callbacks=[recorder])
    assert recorder.calls == [
        ("start", 0),
        ("log", 10),
        ("evaluation", 10),
        ("checkpoint", 10),
        ("checkpoint", 10),  # the history's ckpt-000010.pt
        ("log", 20),
        ("evaluation", 20),
        ("checkpoint", 20),
        ("end", 20),
    ]
    a, b = read_checkpoint(tmp_path / "plain" / "ckpt.pt"), read_checkpoint(tmp_path / "watched" / "ckpt.pt")
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    lines = [json.loads(line) for line in (tmp_path / "watched" / "metrics.jsonl").read_text().splitlines()]
    evaluations = [line for line in lines if line.get("split") == "eval"]
    assert [e["step"] for e in evaluations] == [10, 20]
    assert all(e["images"] == 64 and e["elbo"] < 0 and len(e["kl_cont"]) == 10 for e in evaluations)
    assert (tmp_path / "watched" / "snapshots" / "step-000010.gif").is_file()
    assert evaluations[0]["snapshot"] == "snapshots/step-000010.gif"
    assert sorted(p.name for p in (tmp_path / "watched").glob("ckpt*.pt")) == ["ckpt-000010.pt", "ckpt.pt"]


def test_mig_during_training_on_ground_truth_data(tmp_path):
    name, preset = load_preset(
        "quickstart",
        ["data.image_size=32", 'model.architecture="conv32"', *WATCHED, "train.eval_mig=true"],
    )
    trainer.train(preset, name, tmp_path / "run")
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    migs = [line["mig"] for line in lines if line.get("split") == "eval"]
    assert len(migs) == 2 and all(0.0 <= m <= 1.0 for m in migs)


def test_history_keeps_the_last_n_checkpoints(tmp_path):
    name, preset = load_preset(
        "digits", ["train.steps=50", "train.checkpoint_every=10", "train.keep_checkpoints=2"]
    )
    trainer.train(preset, name, tmp_path / "run")
    kept = sorted(p.name for p in (tmp_path / "run").glob("ckpt-*.pt"))
    assert kept == ["ckpt-000030.pt", "ckpt-000040.pt"]
    assert read_checkpoint(tmp_path / "run" / "ckpt-000040.pt").step == 40


def test_tensorboard_and_mlflow_hold_the_run(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from jvae.trackers.mlflow import store_uri

    name, preset = load_preset("digits", [*WATCHED, 'train.track=["tensorboard", "mlflow"]'])
    run = tmp_path / "run"
    trainer.train(preset, name, run)

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert [e.step for e in events.Scalars("train/loss")] == [10, 20]
    assert {"train/recon", "train/kl_cont/0", "train/capacity_cont", "train/images_per_sec"} <= set(
        tags["scalars"]
    )
    assert [e.step for e in events.Scalars("eval/elbo")] == [10, 20]
    assert {"eval/traversal", "eval/reconstruction"} <= set(tags["images"])
    logged = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert events.Scalars("train/loss")[0].value == pytest.approx(logged["loss"], rel=1e-6)

    client = MlflowClient(store_uri(run))
    run_id = (run / "mlflow" / "run_id").read_text().strip()
    history = client.get_metric_history(run_id, "train/loss")
    assert [m.step for m in history] == [10, 20] and history[0].value == pytest.approx(
        logged["loss"], rel=1e-6
    )
    assert client.get_run(run_id).data.params["train.steps"] == "20"
    assert client.get_run(run_id).info.status == "FINISHED"
    artifacts = [a.path for a in client.list_artifacts(run_id, "eval")]
    assert "eval/traversal-000010.png" in artifacts


def test_a_missing_tracker_extra_is_one_line_naming_it(cli, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a)
    )
    result = cli("train", "--preset", "digits", "--track", "tensorboard", "--out", tmp_path / "run")
    assert result.exit_code == 2 and 'pip install "jvae[tensorboard]"' in result.stderr
    assert not (tmp_path / "run").exists()


def test_plot_draws_one_curve_per_run(cli, tmp_path):
    name, preset = load_preset("digits", WATCHED)
    for seed in (0, 1):
        trainer.train(
            preset.model_copy(update={"train": preset.train.model_copy(update={"seed": seed})}),
            name,
            tmp_path / f"s{seed}",
        )
    from jvae.runs.curves import plot_runs

    assert plot_runs([tmp_path / "s0", tmp_path / "s1"], tmp_path / "curves.png") == ["s0", "s1"]
    result = cli("plot", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "cli.png")
    assert result.exit_code == 0 and (tmp_path / "cli.png").stat().st_size > 10_000


# ----------------------------------------------------------------------------------------------- sweeps

SWEEP = [
    "--preset", "digits", "--preset", "digits-class-conditional", "--seeds", "0-1",
    "--set", "train.steps=10", "--set", "train.log_every=5", "--set", "train.checkpoint_every=5",
    "--evaluate", "--metrics", "elbo", "--metrics", "linear_probe",
]  # fmt: skip


def _jvae(*args: object, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jvae", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".jvae.lock"
    }


@pytest.mark.slow  # 44 s here; test_hostile's Ctrl-C sweep test covers stopping and resuming a sweep
def test_a_killed_sweep_resumes_and_leaves_finished_runs_untouched(cli, tmp_path):
    study = tmp_path / "study"
    first = _jvae("sweep", *SWEEP, "--jobs", "2", "--out", study)
    finished = study / "digits-seed0" / "run.json"
    deadline = time.time() + 300
    while not finished.is_file() and time.time() < deadline:
        time.sleep(0.2)
    first.kill()  # the whole sweep process, while a second run is under way and later ones are pending
    first.wait()
    assert finished.is_file()
    before = _digests(study / "digits-seed0")
    result = cli("sweep", *SWEEP, "--jobs", "2", "--out", study)
    assert result.exit_code == 0, result.stderr
    assert "4/4 runs finished" in result.stdout
    assert _digests(study / "digits-seed0") == before
    manifest = json.loads((study / "study.json").read_text())
    assert [r["name"] for r in manifest["runs"]] == [
        "digits-seed0", "digits-seed1", "digits-class-conditional-seed0", "digits-class-conditional-seed1"
    ]  # fmt: skip

    compared = cli("compare", study, "--metric", "linear_probe", "--out", tmp_path / "table")
    assert compared.exit_code == 0, compared.stderr
    rows = json.loads((tmp_path / "table" / "runs.json").read_text())
    assert sorted(r["run"] for r in rows) == sorted(r["name"] for r in manifest["runs"])
    summary = json.loads((tmp_path / "table" / "summary.json").read_text())["groups"]
    for group in summary:
        kind = "class-conditional" if group["kind"] == "class-conditional" else "jointvae"
        reports = [
            json.loads((study / r["name"] / "report" / "report.json").read_text())
            for r in manifest["runs"]
            if ("class-conditional" in r["name"]) == (kind == "class-conditional")
        ]
        kept = [
            rep["metrics"]["linear_probe"]
            for rep in reports
            if rep["metrics"]["elbo"]["kl_continuous"] + rep["metrics"]["elbo"]["kl_discrete"] >= 0.5
        ]
        assert group["runs"] == 2 and group["n"] == len(kept) and group["collapsed"] == 2 - len(kept)
        if kept:
            assert group["median"] == pytest.approx(statistics.median(kept))
    assert (tmp_path / "table" / "linear_probe-by-kind.png").is_file()


# Slow: submitit's local executor starts a process per job; the sweep it drives is the one tested above.
@pytest.mark.slow
def test_the_slurm_path_runs_through_submitits_local_executor(cli, tmp_path):
    pytest.importorskip("submitit")
    study = tmp_path / "study"
    args = ["--preset", "digits", "--seeds", "0-1", "--set", "train.steps=6", "--set", "train.log_every=3"]
    result = cli(
        "sweep",
        *args,
        "--out",
        study,
        "--slurm",
        "--slurm-cluster",
        "local",
        "--time",
        "0:10:00",
        "--stack",
        "2",
    )
    assert result.exit_code == 0, result.stderr
    assert "2/2 runs finished" in result.stdout
    records = [json.loads((study / f"digits-seed{s}" / "run.json").read_text()) for s in (0, 1)]
    assert [r["stacked"] for r in records] == [2, 2]  # one job trained both as one stack
    assert all(read_checkpoint(study / f"digits-seed{s}" / "ckpt.pt").step == 6 for s in (0, 1))
    assert list((study / "slurm").iterdir())  # submitit's own job folders
    again = cli("sweep", *args, "--out", study, "--slurm", "--slurm-cluster", "local")
    assert again.exit_code == 0 and "2/2 runs finished" in again.stdout  # nothing left to submit


def test_sweep_groups_new_runs_that_differ_in_seed_and_loss_values_only(tmp_path):
    from jvae.studies.study import Study, stack_groups

    grid = {"loss.continuous_capacity.gamma": ["10", "30"], "train.batch_size": ["32", "64"]}
    study = Study(["digits", "digits-class-conditional"], [0, 1], grid, ["train.steps=5"])
    groups = stack_groups(tmp_path, study, study.runs(), 3)
    names = [[spec.name for spec in group] for group in groups]
    stacked = [group for group in names if len(group) > 1]
    # digits: per batch size, its 4 runs (2 gammas x 2 seeds) in a stack of 3 and one alone; a different
    # batch size is a different setting; class-conditional has a classifier and never stacks.
    assert stacked == [
        ["digits-gamma=10-batch_size=32-seed0", "digits-gamma=10-batch_size=32-seed1", "digits-gamma=30-batch_size=32-seed0"],
        ["digits-gamma=10-batch_size=64-seed0", "digits-gamma=10-batch_size=64-seed1", "digits-gamma=30-batch_size=64-seed0"],
    ]  # fmt: skip
    assert sum(len(group) for group in names) == 16
    assert all(len(group) == 1 for group in names if "class-conditional" in group[0])
    assert all(len(group) == 1 for group in stack_groups(tmp_path, study, study.runs(), 1))


# Slow: four runs stacked and one alone; test_stacking.py checks stacked equals alone in one process.
@pytest.mark.slow
def test_a_sweep_stacks_new_runs_and_each_equals_its_run_alone(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("JVAE_THREADS", "1")  # one thread, as each model of a stack on two cores computes
    study = tmp_path / "study"
    fixed = ["--set", "train.steps=30", "--set", "train.log_every=10", "--set", "train.precision=fp32"]
    grid = ["--grid", "loss.continuous_capacity.gamma=10,30"]
    args = ["--preset", "digits", "--seeds", "0-1", *grid, *fixed]
    result = cli("sweep", *args, "--out", study, "--stack", "3")
    assert result.exit_code == 0, result.stderr
    assert "4/4 runs finished" in result.stdout
    stacked = {
        path.parent.name: json.loads(path.read_text()).get("stacked") for path in study.glob("*/run.json")
    }
    assert stacked == {
        "digits-gamma=10-seed0": 3, "digits-gamma=10-seed1": 3, "digits-gamma=30-seed0": 3, "digits-gamma=30-seed1": None
    }  # fmt: skip
    assert [p.name for p in study.glob("stack-*.json")] == ["stack-digits-gamma=10-seed0.json"]
    sets = [
        "train.steps=30",
        "train.log_every=10",
        "train.precision=fp32",
        "loss.continuous_capacity.gamma=30",
    ]
    name, preset = load_preset("digits", [*sets, "train.seed=0"])
    trainer.train(preset, name, tmp_path / "alone", device="cpu")
    mine, alone = (
        torch.load(p / "ckpt.pt", weights_only=True)
        for p in (study / "digits-gamma=30-seed0", tmp_path / "alone")
    )
    assert mine["preset"]["loss"]["continuous_capacity"]["gamma"] == 30
    for key, value in alone["model"].items():
        torch.testing.assert_close(mine["model"][key], value, rtol=1e-5, atol=1e-6)
    again = cli("sweep", *args, "--out", study, "--stack", "3")
    assert again.exit_code == 0 and "4/4 runs finished" in again.stdout


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--preset", "digits", "--grid", "loss.nope=1,2"], "loss.nope"),
        (["--preset", "digits", "--grid", "loss.beta=1,,2"], "empty value"),
        (["--preset", "digits", "--partition", "gpu"], "--partition is a Slurm option"),
        (["--preset", "digits", "--seeds", "3-1"], "--seeds"),
        (["--preset", "nope"], "unknown preset"),
    ],
)
def test_bad_sweeps_are_refused_before_anything_starts(cli, tmp_path, args, expected):
    result = cli("sweep", *args, "--out", tmp_path / "study")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "study").exists()


def test_a_study_folder_refuses_another_grid_and_a_missing_submitit(cli, tmp_path, monkeypatch):
    study = tmp_path / "study"
    base = ["--preset", "digits", "--set", "train.steps=2", "--set", "train.log_every=1", "--out", study]
    assert cli("sweep", *base).exit_code == 0
    before = _digests(study)
    result = cli("sweep", *base, "--grid", "train.lr=1e-3,2e-3")
    assert result.exit_code == 2 and "holds another study" in result.stderr and "grid" in result.stderr
    assert _digests(study) == before
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "submitit" else real(name, *a)
    )
    missing = cli("sweep", *base, "--slurm")
    assert missing.exit_code == 2 and 'pip install "jvae[slurm]"' in missing.stderr


def test_evaluate_gives_one_row_per_checkpoint_of_a_run(cli, tmp_path):
    name, preset = load_preset(
        "digits", ["train.steps=30", "train.checkpoint_every=10", "train.keep_checkpoints=5"]
    )
    trainer.train(preset, name, tmp_path / "run")
    result = cli("evaluate", tmp_path / "run", "--metrics", "elbo", "--fast", "--out", tmp_path / "history")
    assert result.exit_code == 0, result.stderr
    rows = json.loads((tmp_path / "history" / "checkpoints.json").read_text())
    assert [row["step"] for row in rows] == [10, 20, 30]
    assert all(row["elbo"] < 0 for row in rows)
    assert (tmp_path / "history" / "run-ckpt-000010" / "report.json").is_file()
    assert (
        (tmp_path / "history" / "checkpoints.csv")
        .read_text()
        .splitlines()[0]
        .startswith("checkpoint,step,elbo")
    )
