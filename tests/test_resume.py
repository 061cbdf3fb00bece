"""Train, stop, resume: for every model kind and every way of computing (one run, a stack on each engine), a
run stopped part-way and resumed ends bit for bit where the run trained in one go ends: weights, optimiser
and critic state, random generators, and every metrics line (the one spanning the interruption included)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from jvae.base.callbacks import Callback
from jvae.base.devices import other_jvae_processes
from jvae.kinds import KINDS
from jvae.modeling.checkpoint import read_checkpoint
from jvae.modeling.presets import Preset, load_preset
from jvae.modeling.recipes import RECIPE_2018
from jvae.modeling.schedules import learning_rate, temperature
from jvae.runs import runfolder
from jvae.training import trainer

SMALL = ["data.image_size=32", 'model.architecture="conv32"']
GENERATED = ['data.source="generated"', *SMALL]
# The 2018 recipe and today's, 34 steps of 64 digits: the kept last batch of the first epoch (step 29) falls
# after the interruption at 13.
RECIPE = list(RECIPE_2018)
TODAY = [
    'loss.objective_scale="image"',
    'train.adam="current"',
    'model.init="current"',
    'train.last_batch="drop"',
]
EPOCHS = ["train.steps=34", "train.log_every=5", "train.checkpoint_every=1000"]
# Each kind briefly: a log line spans the stop at 4, and a periodic checkpoint precedes it.
BRIEF = ["train.steps=8", "train.log_every=3", "train.checkpoint_every=2", "train.batch_size=16"]


@dataclass(frozen=True)
class Case:
    preset: str
    sets: tuple[str, ...]
    stop: int  # the step the first part stops at
    engine: str | None = None  # None: a run alone; otherwise a stack of two seeds computed by this engine


def _kind_case(kind: str) -> Case:
    """The kind's own preset on data found here: generated dSprites at 32x32, or the digits."""
    if kind == "class-conditional":
        return Case("digits-class-conditional", tuple(BRIEF), 4)
    if kind == "jointvae":
        return Case("dsprites", (*GENERATED, *BRIEF), 4)
    return Case(f"dsprites-{kind}", (*GENERATED, *BRIEF), 4)


CASES = {
    # The quickstart with a cosine learning rate and a linear temperature schedule, both mid-way at the stop.
    "schedules": Case(
        "quickstart",
        (
            *SMALL,
            "train.steps=30",
            "train.log_every=10",
            "train.checkpoint_every=7",
            'train.lr_schedule="cosine"',
            "train.lr_warmup_steps=8",
            "model.temperature_start=3.0",
            "model.temperature_steps=20",
            'model.temperature_curve="linear"',
        ),
        13,
    ),
    "recipe-2018": Case("digits", (*RECIPE, *EPOCHS), 13),
    "recipe-today": Case("digits", (*TODAY, *EPOCHS), 13),
    # The consistency term draws each image's jitter from the run's noise: the stop falls between draws.
    "consistency": Case("digits", ("loss.consistency_weight=5.0", *BRIEF), 4),
    **{f"kind-{kind}": _kind_case(kind) for kind in KINDS},
    **{
        f"stack-{engine}": Case(
            "digits",
            ("train.precision=fp32", "train.batch_size=32", "train.steps=12", "train.log_every=5"),
            7,
            engine,
        )
        for engine in ("kernels", "grouped", "concurrent")
    },
}


def _members(case: Case) -> list[tuple[str, Preset]]:
    _, preset = load_preset(case.preset, list(case.sets))
    if case.engine is None:
        return [("run", preset)]
    body = preset.model_dump(mode="json")
    return [
        (f"seed-{seed}", Preset.model_validate({**body, "train": {**body["train"], "seed": seed}}))
        for seed in (0, 1)
    ]


def _train(case: Case, folder: Path, **options: Any) -> list[trainer.TrainResult]:
    members = _members(case)
    if case.engine is None:
        return [trainer.train(members[0][1], case.preset, folder / "run", device="cpu", **options)]
    return trainer.train_stack(members, case.preset, folder, device="cpu", engine=case.engine, **options)


def _assert_same(a: Any, b: Any, where: str) -> None:
    """Equal to the bit: tensors by value, dicts and lists item by item."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{index}]")
    else:
        assert a == b, where


def _records(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / runfolder.METRICS).read_text().splitlines()]
    for record in records:
        assert record.pop("images_per_sec") > 0  # the one field that may differ: it is timed
    return records


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_stopped_and_resumed_run_ends_exactly_where_the_uninterrupted_run_ends(tmp_path, monkeypatch, case):
    if case.engine == "concurrent":
        monkeypatch.setenv("JVAE_THREADS", "2")  # the concurrent engine: models side by side, a thread each
    members = _members(case)
    steps = members[0][1].train.steps
    assert steps is not None and 0 < case.stop < steps

    whole = _train(case, tmp_path / "whole")
    assert [(r.step, r.interrupted) for r in whole] == [(steps, False)] * len(members)
    calls = iter(range(1000))
    stopped = _train(case, tmp_path / "split", should_stop=lambda: next(calls) >= case.stop)
    assert [(r.step, r.interrupted) for r in stopped] == [(case.stop, True)] * len(members)
    for name, _ in members:
        assert read_checkpoint(tmp_path / "split" / name / runfolder.CHECKPOINT).step == case.stop
    resumed = _train(case, tmp_path / "split", resume=True)
    assert [(r.step, r.interrupted) for r in resumed] == [(steps, False)] * len(members)

    critic = KINDS[members[0][1].loss.kind].critic is not None
    for name, preset in members:
        a = read_checkpoint(tmp_path / "whole" / name / runfolder.CHECKPOINT)
        b = read_checkpoint(tmp_path / "split" / name / runfolder.CHECKPOINT)
        assert a.step == b.step == steps and a.state is not None and b.state is not None
        _assert_same(a.model, b.model, f"{name} model")
        _assert_same(a.state.optimizer, b.state.optimizer, f"{name} optimizer")
        _assert_same(a.state.rng, b.state.rng, f"{name} rng")
        assert (a.state.critic is not None) == critic
        if a.state.critic is not None:
            assert set(a.state.critic) == {"network", "optimizer"}
            _assert_same(a.state.critic, b.state.critic, f"{name} critic")
        whole_log, split_log = _records(tmp_path / "whole" / name), _records(tmp_path / "split" / name)
        assert whole_log == split_log
        every = preset.train.log_every
        assert [r["step"] for r in whole_log] == [*range(every, steps, every), steps]
        for record in whole_log:  # the schedules continue where they stopped
            assert record["lr"] == pytest.approx(learning_rate(preset.train, record["step"], steps))
            if "temperature" in record:
                assert record["temperature"] == pytest.approx(temperature(preset.model, record["step"]))
            if critic:
                assert math.isfinite(record["critic_loss"])
    # The comparison can fail: the two seeds of a stack trained apart.
    if len(members) == 2:
        first, second = (read_checkpoint(tmp_path / "whole" / n / runfolder.CHECKPOINT) for n, _ in members)
        assert any(not torch.equal(first.model[k], second.model[k]) for k in first.model)


class _Said(Callback):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def on_status(self, step: int, message: str) -> None:
        self.lines.append(message)


def test_a_resume_keeps_the_thread_count_it_trained_with_beside_a_busy_jvae(tmp_path, monkeypatch):
    """jvae shares the cores among the jvae processes it finds; a resume takes the count its checkpoint
    records instead, and ends bit for bit where the uninterrupted run ends."""
    busy = tmp_path / "jvae"  # another jvae process, as /proc shows one
    busy.write_text("import time\ntime.sleep(600)\n")
    other = subprocess.Popen([sys.executable, str(busy)])
    before = torch.get_num_threads()
    try:
        deadline = time.monotonic() + 10
        while other_jvae_processes() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        cores = len(os.sched_getaffinity(0))
        shared = max(1, cores // (1 + other_jvae_processes()))
        trained_with = shared + 1  # what the run trains with; what sharing gives a resume differs
        preset = load_preset("digits", ["train.steps=8", "train.log_every=4", "train.batch_size=32"])[1]
        monkeypatch.setenv("JVAE_THREADS", str(trained_with))
        trainer.train(preset, "digits", tmp_path / "whole", device="cpu")
        calls = iter(range(1000))
        trainer.train(
            preset, "digits", tmp_path / "split", device="cpu", should_stop=lambda: next(calls) >= 4
        )
        saved = read_checkpoint(tmp_path / "split" / runfolder.CHECKPOINT)
        assert saved.step == 4 and saved.state is not None and saved.state.threads == trained_with
        monkeypatch.delenv("JVAE_THREADS")
        said = _Said()
        trainer.train(preset, "digits", tmp_path / "split", device="cpu", resume=True, callbacks=[said])
        assert torch.get_num_threads() == trained_with
        assert [line for line in said.lines if "threads" in line] == [
            f"resuming with the {trained_with} threads the run trained with (sharing the cores would give it "
            f"{shared}), so that it continues bit for bit"
        ]
        a = read_checkpoint(tmp_path / "whole" / runfolder.CHECKPOINT)
        b = read_checkpoint(tmp_path / "split" / runfolder.CHECKPOINT)
        _assert_same(a.model, b.model, "model")
        # The user's own count is kept, and the log says the resume is then not exact.
        monkeypatch.setenv("JVAE_THREADS", str(trained_with + 1))
        said = _Said()
        trainer.train(preset, "digits", tmp_path / "split", device="cpu", resume=True, callbacks=[said])
        assert torch.get_num_threads() == trained_with + 1
        assert any("not bit for bit" in line and "$JVAE_THREADS" in line for line in said.lines)
    finally:
        other.kill()
        other.wait()
        torch.set_num_threads(before)
