"""The discrete-code collapse check: it tells a code that carries nothing from one that carries the data, says
so while training, and with on_collapse = restart trains the run again from another seed in a folder that
stays consistent and resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from jvae.data import open_dataset
from jvae.modeling.checkpoint import load_checkpoint, read_checkpoint
from jvae.modeling.presets import load_preset
from jvae.runs import runfolder
from jvae.training import collapse, trainer

SHORT = ["train.steps=12", "train.log_every=6", "train.collapse_step=6"]


def test_the_check_passes_a_code_that_carries_information_and_catches_constant_ones(tmp_path, sprites_ckpt):
    """A digits model whose discrete capacity bounds I(x; c) carries what its capacity allows at the check
    and passes; the same model with its discrete head made to put every image in category 2 is caught, and
    so is the suite's sprites model, trained with the paper's objective: its decoder draws a different
    sprite per category, but its encoder puts every image in one (the constant code the paper's discrete
    term cannot tell from an informative one)."""
    _, preset = load_preset(
        "digits", ["train.steps=100", "train.collapse_step=100", 'loss.discrete_measure="mutual-information"']
    )
    result = trainer.train(preset, "digits", tmp_path / "run", device="cpu")
    assert result.collapse is not None and not result.collapse.collapsed, result.collapse
    assert result.collapse.information[0] > 0.5 * result.collapse.capacity[0] > 0

    loaded = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    source = open_dataset(loaded.preset.data)
    head = loaded.model.discrete_heads[0]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-20.0)
        head.bias[2] = 20.0
    constant = collapse.examine(loaded.model, loaded.preset, source, torch.device("cpu"), 100)
    assert constant.collapsed and constant.collapsed_variables == [0]
    assert constant.information[0] == pytest.approx(0.0, abs=1e-6)
    assert constant.perplexity[0] == pytest.approx(1.0, abs=1e-6)
    assert "collapsed (d0)" in constant.line() and "step 100" in constant.line()

    sprites = load_checkpoint(sprites_ckpt)
    step = sprites.preset.loss.discrete_capacity.steps  # type: ignore[attr-defined]
    paper = collapse.examine(
        sprites.model,
        sprites.preset,
        open_dataset(sprites.preset.data),
        sprites.model.mean_head.weight.device,
        step,
    )
    assert paper.collapsed and paper.information[0] < 0.01 and paper.perplexity[0] < 1.1


def test_the_check_runs_where_the_discrete_capacity_stops_rising_and_only_with_a_discrete_code():
    _, quickstart = load_preset("quickstart")
    assert collapse.check_step(quickstart, 5500) == 4400  # its discrete capacity's ramp
    assert collapse.check_step(quickstart, 3000) is None  # a run shorter than the ramp: only where it says
    _, named = load_preset("quickstart", ["train.collapse_step=100"])
    assert collapse.check_step(named, 5500) == 100
    _, off = load_preset("quickstart", ["train.collapse_check=false"])
    assert collapse.check_step(off, 5500) is None
    _, continuous = load_preset("quickstart", ["model.discrete=[]"])
    assert collapse.check_step(continuous, 5500) is None


def test_the_check_leaves_the_training_unchanged(tmp_path):
    """It encodes held-out images between two steps: the run's weights equal those of a run without it."""
    for name, sets in (("checked", []), ("unchecked", ["train.collapse_check=false"])):
        _, preset = load_preset("digits", [*SHORT, *sets])
        trainer.train(preset, "digits", tmp_path / name, device="cpu")
    a = read_checkpoint(tmp_path / "checked" / "ckpt.pt").model
    b = read_checkpoint(tmp_path / "unchecked" / "ckpt.pt").model
    assert all(torch.equal(a[key], b[key]) for key in a)
    record = json.loads((tmp_path / "checked" / runfolder.COLLAPSE_RECORD).read_text())
    assert [check["step"] for check in record["checks"]] == [6] and record["kept_seed"] == 0
    assert not (tmp_path / "unchecked" / runfolder.COLLAPSE_RECORD).exists()


def _seed_of(run_dir: Path) -> int:
    return read_checkpoint(run_dir / "ckpt.pt").preset["train"]["seed"]


def test_a_collapsed_run_restarts_from_the_next_seed_keeping_its_attempt_and_resumes(tmp_path, cli):
    """6 steps into a digits run the code carries nothing yet (below a quarter of its capacity share), so
    every attempt counts as collapsed: two restarts, then the third seed trains on, and the folder says so."""
    sets = [item for text in SHORT for item in ("--set", text)]
    run = tmp_path / "run"
    done = cli("train", "--preset", "digits", "--out", run, *sets, "--on-collapse", "restart",
               "--set", "train.collapse_restarts=2")  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "restarting from another seed" in done.stderr + done.stdout
    assert "collapsed; no restarts were left" in done.stdout
    record = json.loads((run / runfolder.COLLAPSE_RECORD).read_text())
    assert [(c["seed"], c["action"]) for c in record["checks"]] == [
        (0, "restarted"),
        (1, "restarted"),
        (2, "kept"),
    ]
    assert record["kept_seed"] == 2 == _seed_of(run)
    assert "seed = 2" in (run / runfolder.PRESET_FILE).read_text()
    for seed in (0, 1):  # each collapsed attempt kept whole, at the step it stopped
        attempt = run / runfolder.COLLAPSED_ATTEMPTS / f"seed-{seed}"
        assert read_checkpoint(attempt / "ckpt.pt").step == 6 and _seed_of(attempt) == seed
    assert read_checkpoint(run / "ckpt.pt").step == 12
    resumed = cli("train", "--resume", run, "--set", "train.steps=18")
    assert resumed.exit_code == 0, resumed.output
    assert read_checkpoint(run / "ckpt.pt").step == 18 and _seed_of(run) == 2


# Slow: the single run's restart above takes the same path through the trainer; this adds the stack's seeds.
@pytest.mark.slow
def test_a_stacks_collapsed_members_restart_on_seeds_no_member_holds(tmp_path, cli):
    sets = [item for text in SHORT for item in ("--set", text)]
    done = cli("train", "--preset", "digits", "--seeds", "0-1", "--out", tmp_path / "s", *sets,
               "--on-collapse", "restart", "--set", "train.collapse_restarts=1")  # fmt: skip
    assert done.exit_code == 0, done.output
    seeds = {name: _seed_of(tmp_path / "s" / name) for name in ("seed-0", "seed-1")}
    assert seeds == {"seed-0": 2, "seed-1": 3}  # never another member's seed
    for name, seed in (("seed-0", 0), ("seed-1", 1)):
        assert (tmp_path / "s" / name / runfolder.COLLAPSED_ATTEMPTS / f"seed-{seed}" / "ckpt.pt").is_file()
    resumed = cli("train", "--resume", tmp_path / "s", "--set", "train.steps=18")
    assert resumed.exit_code == 0, resumed.output
    assert {read_checkpoint(tmp_path / "s" / n / "ckpt.pt").step for n in seeds} == {18}


def test_on_collapse_takes_warn_or_restart_in_one_line(cli, tmp_path):
    done = cli("train", "--preset", "digits", "--out", tmp_path / "r", "--on-collapse", "retry")
    assert done.exit_code == 2 and "--on-collapse takes warn or restart" in done.stderr
    assert not (tmp_path / "r").exists()
