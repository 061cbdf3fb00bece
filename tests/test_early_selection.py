"""Choosing among seeds by a label-free criterion, and stopping the seeds it ranks low at an early step."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from jvae.cli.selecting import BEST, SELECTIONS
from jvae.modeling.checkpoint import read_checkpoint
from jvae.studies import criteria, udr

SHORT = ["--set", "train.steps=40", "--set", "train.log_every=20", "--set", 'train.precision="fp32"']


def _representation(categories: np.ndarray) -> udr.Representation:
    points = len(categories)
    return udr.Representation(
        means=np.random.RandomState(0).randn(points, 2),
        kl_continuous=np.ones(2),
        categories=[categories],
        kl_discrete=np.ones(1),
    )


def _group(representations: list[udr.Representation]) -> criteria.Group:
    group = criteria.Group([], None, torch.zeros(0), torch.device("cpu"))  # type: ignore[arg-type]
    group.__dict__["representations"] = representations
    return group


def test_every_offered_criterion_exists_and_knows_which_end_is_better():
    assert set(SELECTIONS) - {"best"} <= set(criteria.CRITERIA) and BEST in criteria.CRITERIA
    assert criteria.CRITERIA["recon"].best([3.0, 1.0, 2.0]) == 1  # lower reconstruction error wins
    assert criteria.CRITERIA["elbo"].best([-3.0, -1.0, -2.0]) == 1


def test_agreement_picks_a_planted_run_among_runs_that_share_the_partition():
    """Four runs split the images the same way (relabelled, a few images moved); two split them at random;
    one puts every image in one category, which agrees with nothing though two such codes are 'equal'."""
    rng = np.random.RandomState(1)
    truth = rng.randint(0, 10, 2000)
    runs = []
    for _ in range(4):
        noisy = truth.copy()
        moved = rng.rand(2000) < 0.1
        noisy[moved] = rng.randint(0, 10, moved.sum())
        runs.append(rng.permutation(10)[noisy])
    runs += [rng.randint(0, 10, 2000) for _ in range(2)]
    runs.append(np.zeros(2000, dtype=np.int64))
    scores = criteria.CRITERIA["agreement"].score(_group([_representation(r) for r in runs]))
    assert int(np.argmax(scores)) < 4
    assert min(scores[:4]) > max(scores[4:]) + 0.2, scores
    assert scores[6] == 0.0
    assert criteria.code_agreement(np.zeros(50), np.zeros(50)) == 0.0


def test_joint_code_makes_one_partition_of_several_variables():
    rep = udr.Representation(
        means=np.zeros((4, 1)),
        kl_continuous=np.ones(1),
        categories=[np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])],
        kl_discrete=np.ones(2),
    )
    assert len(set(criteria.joint_code(rep).tolist())) == 4


def test_train_seeds_select_at_stops_the_losing_seeds_and_trains_the_best_on(cli, tmp_path):
    stack = tmp_path / "stack"
    result = cli(
        "train",
        "--preset",
        "digits",
        "--seeds",
        "0-2",
        "--select",
        "elbo",
        "--select-at",
        "0.5",
        "--out",
        stack,
        *SHORT,
    )
    assert result.exit_code == 0, result.output
    record = json.loads((stack / "early-selection.json").read_text())
    assert record["step"] == 20 and record["total"] == 40
    figures = record["selection"]["runs"]
    best = max(figures, key=lambda name: figures[name]["elbo"])
    assert record["kept"] == [best]
    assert (
        "stopped 2 of 3 seeds at step 20 by elbo" in result.stdout
        and "33% of the stack's steps saved" in result.stdout
    )
    assert (stack / "selected").resolve() == stack / best
    for name in ("seed-0", "seed-1", "seed-2"):
        step = read_checkpoint(stack / name / "ckpt.pt").step
        assert step == (40 if name == best else 20), name
    assert (stack / best / "traversals.gif").is_file()
    mixed = cli("compare", stack, "--select", "elbo")  # runs at different steps are not ranked together
    assert mixed.exit_code != 0 and "stopped at different steps" in mixed.stderr
    loser = next(name for name in ("seed-0", "seed-1", "seed-2") if name != best)
    onward = cli("train", "--resume", stack / loser)  # a stopped seed can still be trained to the end
    assert onward.exit_code == 0, onward.output
    assert read_checkpoint(stack / loser / "ckpt.pt").step == 40


def test_keep_two_chooses_again_at_the_end(cli, tmp_path):
    stack = tmp_path / "stack"
    args = ["--seeds", "0-2", "--select", "recon", "--select-at", "10", "--keep", "2", "--out", stack]
    result = cli("train", "--preset", "digits", *args, *SHORT)
    assert result.exit_code == 0, result.output
    record = json.loads((stack / "early-selection.json").read_text())
    assert record["step"] == 10 and len(record["kept"]) == 2
    final = json.loads((stack / "udr.json").read_text())["groups"][0]
    assert set(final["runs"]) == set(record["kept"]) and final["criterion"] == "recon"
    assert final["selected"] == min(final["runs"], key=lambda name: final["runs"][name]["recon"])
    assert (stack / "selected").resolve() == stack / final["selected"]
    assert result.stdout.count("runs by recon") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--select", "elbo", "--select-at", "1.5"], "--select-at '1.5'"),
        (["--select-at", "0.5"], "--select-at and --keep go with --select"),
        (["--keep", "2"], "--select-at and --keep go with --select"),
        (["--select", "udr", "--select-at", "end", "--keep", "2"], "add --select-at"),
        (["--select", "elbo", "--select-at", "soon"], "--select-at 'soon'"),
    ],
)
def test_bad_early_selection_is_one_line_and_writes_nothing(cli, tmp_path, args, message):
    result = cli("train", "--preset", "digits", "--seeds", "0-1", *args, "--out", tmp_path / "s", *SHORT)
    assert result.exit_code == 2 and message in result.stderr
    assert not (tmp_path / "s").exists()


def test_an_early_step_past_the_schedule_or_keeping_every_seed_is_refused(cli, tmp_path):
    result = cli(
        "train", "--preset", "digits", "--seeds", "0-1", "--select", "elbo", "--select-at", "40",
        "--out", tmp_path / "a", *SHORT,
    )  # fmt: skip
    assert result.exit_code == 2 and "an early step lies between 1 and 39" in result.stderr
    result = cli(
        "train", "--preset", "digits", "--seeds", "0-1", "--select", "elbo", "--select-at", "0.5",
        "--keep", "2", "--out", tmp_path / "b", *SHORT,
    )  # fmt: skip
    assert result.exit_code == 2 and "fewer than the stack's 2 runs" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_an_interrupted_early_selection_resumes_the_kept_seed_only(cli, tmp_path):
    from jvae.runs import runplan
    from jvae.studies.early_selection import train_selecting
    from jvae.training import trainer

    stack = tmp_path / "stack"
    plan = runplan.seeded("digits", SHORT[1::2], [0, 1, 2], stack, None)
    calls: list[object] = []

    def train(part, pause_at=None):  # the run after the selection is stopped at once, as by Ctrl-C
        calls.append(part)
        return trainer.train_plan(part, pause_at=pause_at, should_stop=lambda: len(calls) > 1)

    outcome = train_selecting(plan, "elbo", 0.5, 1, train=train, device=torch.device("cpu"))
    assert outcome.interrupted and len(outcome.kept) == 1
    (kept,) = outcome.kept
    assert all(read_checkpoint(stack / f"seed-{s}" / "ckpt.pt").step == 20 for s in range(3))

    refused = cli("train", "--resume", stack, "--select", "udr")
    assert refused.exit_code == 2 and "selected early by elbo" in refused.stderr
    result = cli("train", "--resume", stack)  # carries on with the record: the kept seed only
    assert result.exit_code == 0, result.output
    for name in ("seed-0", "seed-1", "seed-2"):
        assert read_checkpoint(stack / name / "ckpt.pt").step == (40 if name == kept else 20), name
    assert f"selected {kept}" in result.stdout
