"""The field's benchmarks: DIP-VAE's penalties, the Gaussian and Laplace likelihoods, unsupervised scores,
3D Shapes in its publisher's layout and disentanglement_lib's dSprites variants."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from jvae.base.errors import DataError, DataNotFoundError
from jvae.data.registry import DATASETS
from jvae.kinds.dip_vae import aggregate_covariance, covariance_of_means, dip_penalty
from jvae.modeling.losses import reconstruction
from jvae.modeling.presets import DataConfig, load_preset
from jvae.use.metrics import active_units, gaussian_total_correlation, mutual_information_between_units

# ----------------------------------------------------------------------------------------------- DIP-VAE


def _covariance_by_hand(rows: list[list[float]]) -> list[list[float]]:
    n, d = len(rows), len(rows[0])
    mean = [sum(r[j] for r in rows) / n for j in range(d)]
    return [[sum((r[i] - mean[i]) * (r[j] - mean[j]) for r in rows) / n for j in range(d)] for i in range(d)]


def test_dip_vae_penalties_match_a_hand_computation():
    torch.manual_seed(0)
    mean, logvar = torch.randn(16, 4) * 1.5, torch.randn(16, 4) * 0.3
    by_hand = _covariance_by_hand(mean.tolist())
    assert torch.allclose(covariance_of_means(mean), torch.tensor(by_hand), atol=1e-5)
    variances = [sum(math.exp(row[j]) for row in logvar.tolist()) / 16 for j in range(4)]
    aggregate = [[by_hand[i][j] + (variances[i] if i == j else 0.0) for j in range(4)] for i in range(4)]
    assert torch.allclose(aggregate_covariance(mean, logvar), torch.tensor(aggregate), atol=1e-5)
    for covariance in (by_hand, aggregate):
        off = sum(covariance[i][j] ** 2 for i in range(4) for j in range(4) if i != j)
        diagonal = sum((covariance[i][i] - 1) ** 2 for i in range(4))
        assert dip_penalty(torch.tensor(covariance), 10.0, 100.0).item() == pytest.approx(
            10 * off + 100 * diagonal, rel=1e-5
        )


@pytest.mark.parametrize("variant,od,d", [("i", 10.0, 100.0), ("ii", 10.0, 10.0)])
def test_dip_vae_presets_carry_disentanglement_libs_values(variant, od, d):
    _, preset = load_preset(f"dsprites-dip-vae-{variant}")
    assert preset.loss.kind == f"dip-vae-{variant}"
    assert (preset.loss.lambda_od, preset.loss.lambda_d) == (od, d)


# ----------------------------------------------------------------------------------------------- likelihoods


def test_gaussian_and_laplace_likelihoods_match_their_formulas_and_gradients():
    torch.manual_seed(1)
    logits = torch.randn(3, 3, 4, 4, requires_grad=True)
    target = torch.rand(3, 3, 4, 4)
    mu = torch.sigmoid(logits.detach())
    pixels = 48
    sigma = 0.3
    gaussian = ((target - mu) ** 2).sum() / (2 * sigma**2) / 3 + 0.5 * pixels * math.log(
        2 * math.pi * sigma**2
    )
    value = reconstruction(logits, target, "gaussian", sigma)
    assert value.item() == pytest.approx(gaussian.item(), rel=1e-5)
    value.backward()
    expected = (mu - target) / sigma**2 * mu * (1 - mu) / 3
    assert torch.allclose(logits.grad, expected, atol=1e-5)
    logits.grad = None
    laplace = (target - mu).abs().sum() / 0.5 / 3 + pixels * math.log(2 * 0.5)
    value = reconstruction(logits, target, "laplace", 0.5)
    assert value.item() == pytest.approx(laplace.item(), rel=1e-5)
    value.backward()
    assert torch.allclose(logits.grad, torch.sign(mu - target) / 0.5 * mu * (1 - mu) / 3, atol=1e-5)
    default = reconstruction(logits.detach(), target, "gaussian")  # sigma^2 = 1/2: the sum of squared errors
    assert default.item() == pytest.approx(
        ((target - mu) ** 2).sum().item() / 3 + 0.5 * pixels * math.log(math.pi), rel=1e-5
    )


def test_a_noise_scale_needs_a_continuous_likelihood(cli):
    bad = cli("presets", "show", "digits", "--set", "loss.noise_scale=0.1")
    assert bad.exit_code == 2 and "noise_scale is for reconstruction = gaussian or laplace" in bad.stderr
    good = cli(
        "presets",
        "show",
        "digits",
        "--set",
        'loss.reconstruction="gaussian"',
        "--set",
        "loss.noise_scale=0.1",
    )
    assert good.exit_code == 0


def test_a_gaussian_run_evaluates_with_its_own_likelihood(cli, tmp_path):
    sets = ["--set", 'loss.reconstruction="laplace"', "--set", "train.steps=4", "--set", "train.log_every=2"]
    assert cli("train", "--preset", "digits", *sets, "--out", tmp_path / "run").exit_code == 0
    result = cli(
        "evaluate", tmp_path / "run" / "ckpt.pt", "--metrics", "elbo", "--fast", "--out", tmp_path / "r"
    )
    assert result.exit_code == 0, result.stderr
    import json

    elbo = json.loads((tmp_path / "r" / "report.json").read_text())["metrics"]["elbo"]
    # a Laplace data term with b = 1 on 32x32 images in [0, 1] lies between D log 2 and D (1 + log 2)
    assert 1024 * math.log(2) < elbo["reconstruction_mode"] < 1024 * (1 + math.log(2))


# ----------------------------------------------------------------------------------------------- unsupervised


def test_unsupervised_scores_tell_independent_from_correlated_units():
    rng = np.random.RandomState(0)
    independent = rng.randn(5000, 4)
    shared = rng.randn(5000, 1)
    correlated = np.hstack(
        [shared + 0.1 * rng.randn(5000, 1), shared + 0.1 * rng.randn(5000, 1), rng.randn(5000, 2)]
    )
    assert gaussian_total_correlation(independent) < 0.01
    assert gaussian_total_correlation(correlated) > 1.0
    assert mutual_information_between_units(independent) < 0.05 < mutual_information_between_units(correlated)
    inactive = np.hstack([independent[:, :2], 0.01 * rng.randn(5000, 3)])
    assert active_units(inactive) == 2


# ----------------------------------------------------------------------------------------------- 3D Shapes


def write_shapes3d(path, count: int = 60) -> np.ndarray:
    from jvae.data.shapes3d import index_to_factors

    factors = index_to_factors(np.arange(count))
    images = np.zeros((count, 64, 64, 3), np.uint8)
    images[:, :, :, 0] = (factors[:, 5] * 15)[:, None, None]  # red encodes the orientation
    images[:, :, :, 1] = (factors[:, 4] * 60)[:, None, None]  # green the shape
    with h5py.File(path, "w") as handle:
        handle["images"] = images
        handle["labels"] = factors.astype(np.float64)
    return factors


def _config(name: str, **fields: object) -> DataConfig:
    return DataConfig(dataset=name, image_size=64, channels=3, **fields)


def test_shapes3d_reads_its_h5_in_the_published_factor_order(tmp_path):
    factors = write_shapes3d(tmp_path / "3dshapes.h5")
    source = DATASETS["shapes3d"].open(_config("shapes3d"), str(tmp_path))
    assert (
        len(source) == 60
        and source.factor_names[4] == "shape"
        and source.factor_sizes == [10, 10, 10, 8, 4, 15]
    )
    images = source.images(torch.arange(60), torch.device("cpu"))
    assert torch.allclose(images[:, 0, 0, 0] * 255, torch.from_numpy(factors[:, 5] * 15).float(), atol=0.5)
    drawn = source.sample_factors(10, np.random.RandomState(0))
    observed = source.observations(drawn, torch.device("cpu"))
    assert torch.allclose(observed[:, 1, 0, 0] * 255, torch.from_numpy(drawn[:, 4] * 60).float(), atol=0.5)


def test_shapes3d_missing_or_damaged_is_one_line(tmp_path):
    with pytest.raises(DataNotFoundError, match="3dshapes.h5"):
        DATASETS["shapes3d"].open(_config("shapes3d"), str(tmp_path))
    (tmp_path / "3dshapes.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(DataError, match="cannot read as HDF5"):
        DATASETS["shapes3d"].open(_config("shapes3d"), str(tmp_path))
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle["images"] = np.zeros((4, 32, 32, 3), np.uint8)
        handle["labels"] = np.zeros((4, 6))
    with pytest.raises(DataError, match="expected \\(N, 64, 64, 3\\)"):
        DATASETS["shapes3d"].open(_config("shapes3d"), str(tmp_path / "other.h5"))


# ----------------------------------------------------------------------------------------------- dSprites variants


@pytest.mark.parametrize("name", ["color-dsprites", "noisy-dsprites", "scream-dsprites"])
def test_dsprites_variants_are_reproducible_coloured_sprites_with_dsprites_factors(name, tmp_path):
    painting = tmp_path / "The_Scream.jpg"
    Image.fromarray((np.random.RandomState(0).rand(300, 240, 3) * 255).astype(np.uint8)).save(painting)
    source = DATASETS[name].open(_config(name, source="generated"), str(painting))
    assert len(source) == 737280 and source.factor_names == ["shape", "scale", "orientation", "posX", "posY"]
    picks = torch.tensor([0, 5, 400000, 737279])
    first, again = source.images(picks, torch.device("cpu")), source.images(picks, torch.device("cpu"))
    assert first.shape == (4, 3, 64, 64) and torch.equal(first, again)
    from jvae.data.dsprites import index_to_factors, render

    assert torch.equal(source.observations(index_to_factors(picks.numpy()), torch.device("cpu")), first)
    sprite = (
        render(torch.from_numpy(index_to_factors(picks.numpy())), torch.device("cpu")).expand(-1, 3, -1, -1)
        > 0.5
    )
    if name == "color-dsprites":
        assert float(first[~sprite].abs().max()) == 0.0 and float(first[sprite].min()) >= 0.5
        assert (
            len({tuple(first[i, :, sprite[i, 0]].mean(1).round(decimals=3).tolist()) for i in range(4)}) == 4
        )
    elif name == "noisy-dsprites":
        assert float(first[sprite].min()) == 1.0 and 0.4 < float(first[~sprite].mean()) < 0.6
    else:
        assert not torch.equal(first[0], first[1])  # different patches and colours


def test_scream_dsprites_says_where_to_get_the_painting(tmp_path):
    with pytest.raises(DataNotFoundError, match="The_Scream.jpg") as missing:
        DATASETS["scream-dsprites"].open(_config("scream-dsprites", source="generated"), str(tmp_path))
    assert "wikimedia" in str(missing.value)
    (tmp_path / "The_Scream.jpg").write_bytes(b"not a picture")
    with pytest.raises(DataError, match="cannot read the painting"):
        DATASETS["scream-dsprites"].open(_config("scream-dsprites", source="generated"), str(tmp_path))


# ----------------------------------------------------------------------------------------------- smallNORB, Cars3D


def _norb_matrix(path, array: np.ndarray) -> None:
    magic = 0x1E3D4C55 if array.dtype == np.uint8 else 0x1E3D4C54
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    header = np.array([magic - 2**32 if magic >= 2**31 else magic, array.ndim, *dims], dtype="<i4")
    path.write_bytes(header.tobytes() + array.astype(array.dtype.newbyteorder("<")).tobytes())


def write_smallnorb(root, per_part: int = 6) -> np.ndarray:
    """Both halves in the publisher's layout, a few images each; returns every image's factor row."""
    from jvae.data.smallnorb import PARTS

    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for p, stem in enumerate(PARTS.values()):
        categories = np.arange(per_part, dtype=np.int32) % 5
        info = np.stack(
            [
                np.full(per_part, 4 + p),
                np.arange(per_part) % 9,
                2 * (np.arange(per_part) % 18),
                np.arange(per_part) % 6,
            ],
            1,
        ).astype(np.int32)
        images = np.zeros((per_part, 2, 96, 96), np.uint8)
        images[:, 0] = (info[:, 1] * 25)[:, None, None]  # the first camera's brightness encodes the elevation
        _norb_matrix(root / f"{stem}-dat.mat", images)
        _norb_matrix(root / f"{stem}-cat.mat", categories)
        _norb_matrix(root / f"{stem}-info.mat", info)
        rows.append(np.stack([categories, info[:, 0], info[:, 1], info[:, 2] // 2, info[:, 3]], 1))
    return np.concatenate(rows)


def test_smallnorb_reads_the_binary_matrix_files(tmp_path):
    factors = write_smallnorb(tmp_path / "norb")
    source = DATASETS["smallnorb"].open(
        DataConfig(dataset="smallnorb", image_size=64, channels=1), str(tmp_path / "norb")
    )
    assert len(source) == 12 and source.factor_names == [
        "category",
        "instance",
        "elevation",
        "azimuth",
        "lighting",
    ]
    images = source.images(torch.arange(12), torch.device("cpu"))
    assert torch.allclose(images[:, 0, 10, 10] * 255, torch.from_numpy(factors[:, 2] * 25).float(), atol=0.5)
    drawn = source.sample_factors(5, np.random.RandomState(0))
    observed = source.observations(drawn, torch.device("cpu"))
    assert torch.allclose(observed[:, 0, 0, 0] * 255, torch.from_numpy(drawn[:, 2] * 25).float(), atol=0.5)


def test_smallnorb_missing_or_truncated_is_one_line(tmp_path):
    with pytest.raises(DataNotFoundError, match="training-"):
        DATASETS["smallnorb"].open(DataConfig(dataset="smallnorb", image_size=64, channels=1), str(tmp_path))
    write_smallnorb(tmp_path / "norb")
    dat = next((tmp_path / "norb").glob("*training-dat.mat"))
    dat.write_bytes(dat.read_bytes()[:5000])
    with pytest.raises(DataError, match="ends after"):
        DATASETS["smallnorb"].open(
            DataConfig(dataset="smallnorb", image_size=64, channels=1), str(tmp_path / "norb")
        )


def write_cars(root, cars: int = 3) -> None:
    from scipy.io import savemat

    folder = root / "cars"
    folder.mkdir(parents=True)
    for car in range(cars):
        renders = np.zeros((32, 32, 3, 24, 4), np.uint8)
        renders[:, :, 0] = (np.arange(24) * 10)[None, None, :, None]  # red encodes the azimuth
        renders[:, :, 1] = car * 50
        savemat(folder / f"car_{car:03d}_mesh.mat", {"im": renders})


def test_cars3d_reads_one_mat_file_per_car(tmp_path):
    write_cars(tmp_path / "data")
    source = DATASETS["cars3d"].open(
        DataConfig(dataset="cars3d", image_size=64, channels=3), str(tmp_path / "data")
    )
    assert len(source) == 4 * 24 * 3 and source.factor_sizes == [4, 24, 3]
    factors = np.array([[0, 5, 2], [3, 23, 0]])
    observed = source.observations(factors, torch.device("cpu"))
    assert observed[:, 0, 0, 0].mul(255).round().tolist() == [50.0, 230.0]
    assert observed[:, 1, 0, 0].mul(255).round().tolist() == [100.0, 0.0]


def test_cars3d_missing_or_damaged_is_one_line(tmp_path):
    with pytest.raises(DataNotFoundError, match="car_NNN_mesh.mat"):
        DATASETS["cars3d"].open(DataConfig(dataset="cars3d", image_size=64, channels=3), str(tmp_path))
    (tmp_path / "cars").mkdir()
    (tmp_path / "cars" / "car_000_mesh.mat").write_bytes(b"MATLAB 5.0 nonsense")
    with pytest.raises(DataError, match="not a Cars3D render file"):
        DATASETS["cars3d"].open(DataConfig(dataset="cars3d", image_size=64, channels=3), str(tmp_path))


def test_celeba_128_trains_with_the_conv128_network(cli, tmp_path):
    folder = tmp_path / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    for i in range(4):
        Image.fromarray((np.random.RandomState(i).rand(218, 178, 3) * 255).astype(np.uint8)).save(
            folder / f"{i + 1:06d}.jpg"
        )
    sets = ["--set", "train.steps=2", "--set", "train.batch_size=2", "--set", "train.log_every=1"]
    result = cli(
        "train", "--preset", "celeba-128", *sets, "--data", tmp_path / "celeba", "--out", tmp_path / "run"
    )
    assert result.exit_code == 0, result.stderr
    from jvae.modeling.checkpoint import load_checkpoint

    loaded = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    assert loaded.preset.model.architecture == "conv128"
    assert loaded.model.decode(torch.zeros(1, loaded.model.latent_dim)).shape == (1, 3, 128, 128)
    assert len(loaded.model.encoder[0]) == 10  # five convolutions, each with its ReLU
