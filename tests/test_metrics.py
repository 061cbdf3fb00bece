"""Disentanglement metrics: hand-computed cases, properties on synthetic codes, and `jvae evaluate`."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch

from jvae.data.capabilities import uniform_factors
from jvae.use import metrics as m


class Toy:
    """A ground-truth dataset whose 'images' are the factor values themselves, (n, K) float."""

    factor_names = ["a", "b", "c"]
    factor_sizes = [3, 4, 5]

    def sample_factors(self, n, rng):
        return uniform_factors(self.factor_sizes, n, rng)

    def observations(self, factors, device):
        return torch.as_tensor(factors, dtype=torch.float32)


def identity(images: torch.Tensor) -> np.ndarray:
    return images.numpy()


def noise(images: torch.Tensor) -> np.ndarray:
    return np.random.default_rng(int(images.sum().item() * 1000) % (2**32)).normal(size=(images.shape[0], 3))


SMALL = {"num_train": 300, "num_eval": 200}

# ----------------------------------------------------------------------------------------------- by hand


def test_mig_and_mic_hand_computed():
    factor = np.array([[0], [0], [1], [1]])
    exact = np.array(
        [[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float
    )  # dim 0 copies the factor, dim 1 is independent
    assert m.mig(exact, factor) == pytest.approx(1.0)
    partial = np.array([[0, 0], [0, 0], [1, 0], [1, 1]], dtype=float)
    # I(dim1; factor) = H(3/4, 1/4) - 1/2 * H(1/2, 1/2) = 0.5623 - 0.3466 = 0.2158 nats; H(factor) = ln 2
    second = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) - 0.5 * math.log(2)
    assert m.mig(partial, factor) == pytest.approx((math.log(2) - second) / math.log(2), abs=1e-9)
    assert m.mic(partial, factor[:, 0], [0]) == pytest.approx((math.log(2) - second) / math.log(2), abs=1e-9)
    assert m.mic(partial, factor[:, 0], [0, 1]) == pytest.approx(
        (math.log(2) + second) / math.log(2), abs=1e-9
    )
    assert m.mic(partial, factor[:, 0], [1]) == pytest.approx((second - math.log(2)) / math.log(2), abs=1e-9)


def test_mig_ignores_single_valued_factors():
    factors = np.array([[0, 5], [0, 5], [1, 5], [1, 5]])
    codes = np.array([[0.0, 3], [0, 1], [1, 2], [1, 0]])
    assert m.mig(codes, factors) == pytest.approx(m.mig(codes, factors[:, :1]))
    with pytest.raises(ValueError):
        m.mig(codes, factors[:, 1:])


def test_cluster_accuracy_hand_computed():
    assert m.cluster_accuracy([0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 0, 2]) == pytest.approx(5 / 6)
    assert m.cluster_accuracy([0, 0, 0, 0], [0, 1, 2, 3]) == pytest.approx(1 / 4)


def test_majority_vote_accuracy_hand_computed():
    train = np.array([[8, 2], [1, 9]])
    assert m.majority_vote_accuracy(train, train) == pytest.approx(17 / 20)
    assert m.majority_vote_accuracy(train, np.array([[1, 1], [3, 5]])) == pytest.approx(6 / 10)


def test_dci_gives_the_same_numbers_for_the_same_seed():
    rng = np.random.RandomState(0)
    codes = rng.randn(400, 4)
    codes[:, 3] = codes[:, 0]  # a tie the trees break at random unless seeded
    factors = np.stack([(codes[:, 0] * 2).round().clip(-3, 3), (codes[:, 1] > 0)], axis=1).astype(int)
    runs = [
        m.dci_importance(codes[:300], factors[:300], codes[300:], factors[300:], seed=0) for _ in range(3)
    ]
    assert all(np.array_equal(runs[0][0], other[0]) for other in runs[1:])


def test_dci_hand_computed():
    assert m.dci_disentanglement(np.eye(2)) == pytest.approx(1.0)
    assert m.dci_completeness(np.eye(2)) == pytest.approx(1.0)
    assert m.dci_disentanglement(np.ones((2, 2))) == pytest.approx(0.0, abs=1e-9)
    assert m.dci_completeness(np.ones((2, 2))) == pytest.approx(0.0, abs=1e-9)
    both_on_factor0 = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert m.dci_disentanglement(both_on_factor0) == pytest.approx(1.0, abs=1e-6)
    assert m.dci_completeness(both_on_factor0) == pytest.approx(0.0, abs=1e-6)


def test_betavae_feature_hand_computed():
    a, b = np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([[1.0, 1.0], [2.0, 5.0]])
    assert np.array_equal(m.betavae_feature(a, b), [0.5, 1.0])


def test_sap_hand_computed():
    assert m.sap_from_scores(np.array([[1.0, 0.5], [0.4, 0.9]])) == pytest.approx((0.6 + 0.4) / 2)


# ----------------------------------------------------------------------------------------------- properties


@pytest.fixture(scope="module")
def factor_sample():
    rng = np.random.RandomState(0)
    return uniform_factors([3, 4, 5], 3000, rng)


def test_codes_equal_to_factors_score_perfectly(factor_sample):
    assert (
        m.mig(factor_sample.astype(float), factor_sample) > 0.99
    )  # not 1: sample MI between independent factors
    assert m.factorvae_score(identity, Toy(), **SMALL, num_variance_estimate=500)["eval_accuracy"] == 1.0
    assert m.betavae_score(identity, Toy(), **SMALL)["eval_accuracy"] == 1.0
    scores = m.dci(identity, Toy(), num_train=500, num_test=300)
    assert (
        scores["disentanglement"] > 0.9
        and scores["completeness"] > 0.9
        and scores["informativeness_test"] > 0.95
    )
    assert m.sap(identity, Toy(), num_train=500, num_test=300) > 0.2


def test_noise_codes_score_near_chance(factor_sample):
    rng = np.random.default_rng(1)
    assert m.mig(rng.normal(size=(3000, 3)), factor_sample) < 0.02
    assert m.factorvae_score(noise, Toy(), **SMALL, num_variance_estimate=500)["eval_accuracy"] < 0.5
    assert m.betavae_score(noise, Toy(), **SMALL)["eval_accuracy"] < 0.5


def test_permuting_or_rescaling_dims_leaves_mig_and_factorvae_unchanged(factor_sample):
    codes = factor_sample + np.random.default_rng(2).normal(scale=0.3, size=factor_sample.shape)
    changed = codes[:, [2, 0, 1]] * np.array([3.0, 0.2, 7.0]) + np.array([1.0, -4.0, 0.0])
    assert m.mig(changed, factor_sample) == pytest.approx(m.mig(codes, factor_sample), abs=1e-12)

    def shuffled(images: torch.Tensor) -> np.ndarray:
        return images.numpy()[:, [2, 0, 1]] * np.array([3.0, 0.5, 7.0])

    settings = {**SMALL, "num_variance_estimate": 500}
    assert m.factorvae_score(shuffled, Toy(), **settings) == m.factorvae_score(identity, Toy(), **settings)


def test_cluster_accuracy_of_permuted_labels_is_one():
    labels = np.random.default_rng(0).integers(0, 10, 500)
    permutation = np.random.default_rng(1).permutation(10)
    assert m.cluster_accuracy(permutation[labels], labels) == 1.0


def test_same_seed_same_numbers():
    first = m.betavae_score(noise, Toy(), seed=3, **SMALL)
    assert first == m.betavae_score(noise, Toy(), seed=3, **SMALL)
    assert m.factorvae_score(
        identity, Toy(), seed=4, num_train=50, num_eval=50, num_variance_estimate=100
    ) == (m.factorvae_score(identity, Toy(), seed=4, num_train=50, num_eval=50, num_variance_estimate=100))


# ----------------------------------------------------------------------------------------------- evaluate


@pytest.fixture
def small_ckpt(sprites_ckpt):
    """The session's sprites model (conftest.py): a 32x32 quickstart network trained on generated dSprites."""
    return sprites_ckpt


def test_evaluate_writes_the_report_and_matches_the_api(cli, small_ckpt, tmp_path):
    from jvae.data.dsprites import GeneratedDSprites
    from jvae.evaluation import representation
    from jvae.modeling.checkpoint import load_checkpoint

    out = tmp_path / "report"
    result = cli(
        "evaluate",
        small_ckpt,
        "--fast",
        "--metrics",
        "mig",
        "--metrics",
        "factorvae",
        "--metrics",
        "elbo",
        "--metrics",
        "sap",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "MIG" in result.stdout and "FactorVAE score" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert set(report["metrics"]) == {"mig", "factorvae", "elbo", "sap"}
    assert report["settings"]["versions"]["sklearn"] and len(report["settings"]["checkpoint_sha256"]) == 64
    assert (out / "report.md").read_text().startswith("# jvae evaluation report")
    for figure in ("kl_per_unit.png", "mi_heatmap.png", "top_units.gif"):
        assert (out / figure).stat().st_size > 0

    model = load_checkpoint(small_ckpt).model
    encode, source = representation(model), GeneratedDSprites(1, 32)
    codes, factors = m.factor_codes(encode, source, 1000, np.random.RandomState(0))
    assert report["metrics"]["mig"] == pytest.approx(m.mig(codes, factors), abs=1e-12)
    api = m.factorvae_score(encode, source, seed=0, num_train=1000, num_eval=500, num_variance_estimate=1000)
    assert report["metrics"]["factorvae"] == api
    assert report["metrics"]["sap"] == m.sap(encode, source, seed=0, num_train=1000, num_test=500)


def test_evaluate_errors(cli, small_ckpt, tmp_path):
    result = cli("evaluate", small_ckpt, "--metrics", "fid", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "unknown metric 'fid'" in result.stderr
    result = cli("evaluate", small_ckpt, "--metrics", "linear_probe", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "cannot give linear_probe" in result.stderr
    result = cli("evaluate", small_ckpt, "--out", tmp_path / "no" / "r")
    assert result.exit_code == 1 and "output folder does not exist" in result.stderr


def test_name_units_stores_the_clear_factor_of_each_unit(cli, small_ckpt, tmp_path):
    from jvae.evaluation import Report, names_to_store
    from jvae.modeling.checkpoint import read_checkpoint

    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(small_ckpt.read_bytes())
    result = cli("evaluate", ckpt, "--fast", "--metrics", "mig", "--name-units", "--out", tmp_path / "r")
    assert result.exit_code == 0 and "named units:" in result.stdout
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    expected = names_to_store(Report(factor_units=report["factor_units"]))
    assert read_checkpoint(ckpt).unit_names == expected

    entries = [
        {"factor": "posX", "unit": "1", "normalised_mi": 0.8, "clear": True},
        {"factor": "posY", "unit": "2", "normalised_mi": 0.3, "clear": False},
        {"factor": "scale", "unit": "1", "normalised_mi": 0.5, "clear": True},
        {"factor": "shape", "unit": "d0", "normalised_mi": 0.6, "clear": True},
    ]
    assert names_to_store(Report(factor_units=entries)) == {"1": "posX", "d0": "shape"}


def test_label_metrics_on_a_labelled_dataset(tmp_path):
    from jvae.data.dsprites import render
    from jvae.data.sources import TensorImages
    from jvae.evaluation import evaluate, representation
    from jvae.modeling.builder import build_model
    from jvae.modeling.checkpoint import Checkpoint, LoadedCheckpoint
    from jvae.modeling.presets import load_preset

    _, preset = load_preset("quickstart", ["data.image_size=32", 'model.architecture="conv32"'])
    factors = uniform_factors([3, 6, 40, 32, 32], 600, np.random.RandomState(0))
    images = (render(torch.from_numpy(factors), torch.device("cpu")) * 255).to(torch.uint8)
    source = TensorImages(images, "labelled sprites", 1, 32)
    source.labels = torch.from_numpy(factors[:, 0])  # the shape as a label
    torch.manual_seed(0)
    model = build_model(preset).eval()
    checkpoint_file = tmp_path / "ckpt.pt"  # only hashed into the report's settings
    checkpoint_file.write_bytes(b"weights")
    loaded = LoadedCheckpoint(checkpoint_file, Checkpoint.new("sprites", preset, {}), preset, model)
    report = evaluate(loaded, checkpoint_file, source, torch.device("cpu"), fast=True)
    assert set(report.metrics) == {
        "cluster_accuracy",
        "linear_probe",
        "elbo",
        "unsupervised",
        "discrete_code",
    }
    codes = representation(model)(source.images(torch.arange(600), torch.device("cpu")))
    expected = m.cluster_accuracy(codes[:, 6], factors[:, 0])  # the whole set, in another order
    assert report.metrics["cluster_accuracy"]["d0"] == pytest.approx(expected)
    assert 0.0 <= report.metrics["linear_probe"] <= 1.0
    assert report.settings["checkpoint_sha256"] == hashlib.sha256(b"weights").hexdigest()


def test_evaluate_says_a_missing_checkpoint_first(cli, tmp_path):
    result = cli("evaluate", tmp_path / "nothere" / "ckpt.pt")
    assert result.exit_code == 1 and "checkpoint not found" in result.stderr
