"""UDR (unsupervised model selection): its scores on representations whose answer is known, and choosing a
stack's or a study's model through the CLI."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from jvae.studies import udr

POINTS = 1000


def _run(factors: np.ndarray, kl: np.ndarray | None = None, categories=()) -> udr.Representation:
    units = factors.shape[1]
    kl = np.full(units, 2.0) if kl is None else kl
    return udr.Representation(factors, kl, list(categories), np.full(len(categories), 1.0))


def _factors(seed: int, units: int = 6) -> np.ndarray:
    return np.random.RandomState(seed).randn(POINTS, units)


def _grid(units: int = 5, levels: int = 4) -> np.ndarray:
    """Every combination of factor values, as a ground-truth dataset holds them: factors whose sample
    correlations are exactly zero, so a run that recovers them is exactly disentangled."""
    return np.array(list(itertools.product(range(levels), repeat=units)), dtype=np.float64)


# UDR_S gives equal runs 1; UDR_L's Lasso shrinks each coefficient by its alpha, as disentanglement_lib's does.
EQUAL = {"spearman": 1.0, "lasso": 1.0 - udr.LASSO_ALPHA}


@pytest.mark.parametrize("method", udr.METHODS)
def test_identical_runs_score_one(method):
    run = _run(_grid())
    assert udr.pair_score(run, run, method) == pytest.approx(EQUAL[method], abs=0.02)


@pytest.mark.parametrize("method", udr.METHODS)
def test_a_permuted_and_sign_flipped_run_scores_one(method):
    factors = _grid()
    rng = np.random.RandomState(5)
    order, signs = rng.permutation(5), rng.choice([-1.0, 1.0], size=5)
    other = _run(factors[:, order] * signs)
    assert udr.pair_score(_run(factors), other, method) == pytest.approx(EQUAL[method], abs=0.02)


@pytest.mark.parametrize("method", udr.METHODS)
def test_two_independent_random_encoders_score_near_zero(method):
    assert udr.pair_score(_run(_factors(2)), _run(_factors(3)), method) < 0.05


def test_a_rotated_run_scores_below_an_aligned_one():
    factors = _grid()
    rotation, _ = np.linalg.qr(np.random.RandomState(6).randn(5, 5))
    aligned, rotated = (
        udr.pair_score(_run(factors), _run(factors[:, ::-1])),
        udr.pair_score(_run(factors), _run(factors @ rotation)),
    )
    assert aligned > 0.95 and rotated < 0.6


def test_uninformative_units_are_left_out():
    factors = _grid()
    points = len(factors)
    kl = np.array([2.0] * 5 + [0.001] * 3)  # three units carry nothing: their noise must not count
    first = _run(np.hstack([factors, np.random.RandomState(8).randn(points, 3)]), kl)
    second = _run(np.hstack([factors, np.random.RandomState(9).randn(points, 3)]), kl)
    assert udr.pair_score(first, second, "spearman") == pytest.approx(1.0, abs=0.02)


def test_discrete_agreement_is_one_for_relabelled_categories_and_low_for_unrelated_ones():
    grid = _grid(units=6)  # five continuous factors and a four-way one, all exactly independent
    factors, categories = grid[:, :5], grid[:, 5].astype(int)
    relabel = np.array([2, 0, 3, 1])
    assert udr.category_agreement(categories, relabel[categories]) == pytest.approx(1.0)
    unrelated = np.random.RandomState(12).randint(0, 4, size=len(grid))
    assert udr.category_agreement(categories, unrelated) < 0.05
    first = _run(factors, categories=[categories])
    second = _run(factors[:, ::-1], categories=[relabel[categories]])
    assert udr.pair_score(first, second) == pytest.approx(1.0, abs=1e-9)
    guessing = _run(factors[:, ::-1], categories=[unrelated])
    assert udr.pair_score(first, guessing) < udr.pair_score(first, second) - 0.05


def test_correlation_ratio_is_one_when_categories_fix_the_value_and_zero_when_unrelated():
    categories = np.repeat(np.arange(4), 250)
    assert udr.correlation_ratio(categories * 2.0 - 3.0, categories) == pytest.approx(1.0)
    values = np.tile(np.array([-1.0, 1.0]), 500)  # the same spread inside every category
    assert udr.correlation_ratio(values, categories) == pytest.approx(0.0, abs=1e-9)
    chance = np.random.RandomState(17).randint(0, 10, size=1000)  # labels unrelated to the values
    assert udr.correlation_ratio(np.random.RandomState(18).randn(1000), chance) < 0.1


def test_relative_strength_of_known_matrices():
    assert udr.relative_strength(np.eye(3)) == 1.0
    assert udr.relative_strength(np.ones((3, 3))) == pytest.approx(1 / 3)
    assert udr.relative_strength(np.zeros((3, 3))) == 0.0
    assert udr.relative_strength(np.zeros((0, 0))) == 0.0


def test_selection_picks_a_planted_disentangled_run():
    """Four runs recover the factors (permuted, flipped, noisy); two others each mix them their own way."""
    factors = _factors(15)
    rng = np.random.RandomState(16)
    runs = [
        _run(factors[:, rng.permutation(6)] * rng.choice([-1.0, 1.0], 6) + rng.randn(POINTS, 6) * 0.2)
        for _ in range(4)
    ]
    runs += [_run(factors @ np.linalg.qr(rng.randn(6, 6))[0]) for _ in range(2)]
    for method in udr.METHODS:
        scores = udr.run_scores(udr.pairwise_scores(runs, method))
        assert int(np.argmax(scores)) < 4, (method, scores)
        assert min(scores[:4]) > max(scores[4:]) + 0.2, (method, scores)


# ----------------------------------------------------------------------------------------------- the CLI

SHORT = ["--set", "train.steps=40", "--set", "train.log_every=20", "--set", 'train.precision="fp32"']


def test_train_seeds_select_udr_links_the_chosen_model_and_compare_shows_the_scores(cli, tmp_path):
    stack = tmp_path / "stack"
    result = cli("train", "--preset", "digits", "--seeds", "0-2", "--select", "udr", "--out", stack, *SHORT)
    assert result.exit_code == 0, result.output
    assert "selected seed-" in result.stdout
    body = json.loads((stack / "udr.json").read_text())
    (group,) = body["groups"]
    assert set(group["runs"]) == {"seed-0", "seed-1", "seed-2"}
    assert (stack / "selected").is_symlink() and (stack / "selected").resolve() == stack / group["selected"]
    best = max(group["runs"], key=lambda name: group["runs"][name]["udr"])
    assert group["selected"] == best
    for name, scores in group["runs"].items():
        assert 0.0 <= scores["udr"] <= 1.0 and 0.0 <= scores["udr_lasso"] <= 1.0
        record = json.loads((stack / name / "udr.json").read_text())
        assert record["udr"] == scores["udr"] and record["selected"] == (name == best)
    shown = cli("compare", stack, "--metric", "udr", "--out", tmp_path / "table")
    assert shown.exit_code == 0, shown.output
    rows = json.loads((tmp_path / "table" / "runs.json").read_text())
    assert {row["run"]: row["udr"] for row in rows} == {n: s["udr"] for n, s in group["runs"].items()}

    (stack / "seed-1" / "udr.json").write_text('{"udr": "high", "selected": 1}')
    damaged = cli("compare", stack, "--metric", "udr", "--out", tmp_path / "table2")
    assert damaged.exit_code == 1  # the others compared, the damaged run named
    assert str(stack / "seed-1" / "udr.json") in damaged.stderr
    rows = json.loads((tmp_path / "table2" / "runs.json").read_text())
    assert {row["run"] for row in rows} == {"seed-0", "seed-2"}


# Slow: four training processes; the selection itself is checked by the `train --seeds` test above.
@pytest.mark.slow
def test_sweep_select_udr_writes_the_selection_per_setting_into_the_study(cli, tmp_path):
    study = tmp_path / "study"
    result = cli(
        "sweep",
        "--preset",
        "digits",
        "--seeds",
        "0-1",
        "--grid",
        "loss.continuous_capacity.gamma=10,30",
        "--select",
        "udr",
        "--jobs",
        "2",
        "--out",
        study,
        *SHORT,
    )
    assert result.exit_code == 0, result.output
    groups = json.loads((study / "udr.json").read_text())["groups"]
    assert len(groups) == 2  # one per gamma, each of its two seeds
    for group in groups:
        assert len(group["runs"]) == 2 and group["selected"] in group["runs"]
        assert len({name.split("seed")[0] for name in group["runs"]}) == 1
    again = cli("compare", study, "--select", "udr")
    assert again.exit_code == 0 and again.stdout.count("selected:") == 2


def test_select_refuses_bad_values_and_lone_runs(cli, tmp_path):
    result = cli("train", "--preset", "digits", "--select", "most", "--out", tmp_path / "a")
    assert result.exit_code == 2 and "--select 'most'" in result.stderr
    result = cli("train", "--preset", "digits", "--select", "udr", "--out", tmp_path / "b")
    assert result.exit_code == 2 and "--seeds" in result.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    lone = tmp_path / "lone"
    assert cli("sweep", "--preset", "digits", "--seeds", "0", "--out", lone, *SHORT).exit_code == 0
    result = cli("compare", lone, "--select", "udr")
    assert result.exit_code != 0 and "two or more finished runs" in result.stderr
