"""dSprites: the generator against the dataset's published facts, and the npz loader on a file in its format."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from jvae.base.errors import DataError, DataNotFoundError
from jvae.data import open_dataset
from jvae.data.dsprites import (
    COUNT,
    FACTOR_SIZES,
    FileDSprites,
    GeneratedDSprites,
    factors_to_index,
    index_to_factors,
    render,
)
from jvae.modeling.presets import DataConfig

CPU = torch.device("cpu")


def sprite(shape: int, scale: int, orientation: int, x: int, y: int) -> np.ndarray:
    return render(torch.tensor([[shape, scale, orientation, x, y]]), CPU)[0, 0].numpy()


def test_every_combination_is_addressable_in_the_published_order():
    source = GeneratedDSprites(1, 64)
    assert len(source) == COUNT == int(np.prod(FACTOR_SIZES))
    assert source.factor_names == ["shape", "scale", "orientation", "posX", "posY"]
    rng = np.random.default_rng(0)
    index = rng.integers(0, COUNT, 1000)
    assert np.array_equal(factors_to_index(index_to_factors(index)), index)
    assert index_to_factors(np.array([1]))[0].tolist() == [0, 0, 0, 0, 1]  # posY is fastest
    assert index_to_factors(np.array([245759]))[0].tolist() == [0, 5, 39, 31, 31]
    assert index_to_factors(np.array([COUNT - 1]))[0].tolist() == [2, 5, 39, 31, 31]
    assert index_to_factors(np.array([245760]))[0].tolist() == [1, 0, 0, 0, 0]
    assert index_to_factors(np.array([40960]))[0].tolist() == [0, 1, 0, 0, 0]


def test_shapes_have_the_published_sizes_at_scale_one():
    square, ellipse, heart = (sprite(s, 5, 0, 16, 16) for s in range(3))
    assert square.sum() == pytest.approx(400, rel=0.12)  # about 20 x 20 px
    assert ellipse.sum() == pytest.approx(np.pi * 13 * 7, rel=0.1)  # about 26 x 14 px
    columns, rows = np.nonzero(heart.any(0))[0], np.nonzero(heart.any(1))[0]
    assert np.ptp(columns) + 1 == pytest.approx(20, abs=2) and np.ptp(rows) + 1 == pytest.approx(17, abs=2)
    assert sprite(0, 0, 0, 16, 16).sum() == pytest.approx(100, rel=0.25)  # scale 0.5 halves the side


def test_position_moves_the_centre_to_16_plus_32p():
    for x, y in [(0, 0), (31, 0), (10, 25)]:
        image = sprite(0, 2, 0, x, y)
        rows, columns = np.nonzero(image)
        assert columns.mean() == pytest.approx(16 + 32 * x / 31, abs=0.6)
        assert rows.mean() == pytest.approx(16 + 32 * y / 31, abs=0.6)


def test_orientation_spans_a_full_turn_with_both_ends():
    assert np.array_equal(sprite(1, 5, 0, 16, 16), sprite(1, 5, 39, 16, 16))
    assert not np.array_equal(sprite(1, 5, 0, 16, 16), sprite(1, 5, 10, 16, 16))
    assert (
        sprite(1, 5, 10, 16, 16) == sprite(1, 5, 0, 16, 16).T
    ).mean() > 0.98  # 10/39 of a turn ~ a quarter


def test_generated_source_draws_batches_and_resizes_for_the_preset():
    source = open_dataset(DataConfig(dataset="dsprites", image_size=32, channels=3, source="generated"))
    images = source.images(torch.tensor([0, 5000, 700000]), CPU)
    assert images.shape == (3, 3, 32, 32) and images.min() >= 0 and images.max() <= 1


def write_dsprites_npz(path, factors: np.ndarray) -> np.ndarray:
    """A file in the published format (keys imgs, latents_classes, latents_values) for the given factors."""
    imgs = render(torch.from_numpy(factors), CPU)[:, 0].numpy().astype(np.uint8)
    classes = np.concatenate([np.zeros((len(factors), 1), np.int64), factors], axis=1)
    np.savez_compressed(path, imgs=imgs, latents_classes=classes, latents_values=classes.astype(np.float64))
    return imgs


def test_npz_loader_reads_the_published_format(tmp_path):
    rng = np.random.default_rng(0)
    factors = index_to_factors(rng.choice(COUNT, 300, replace=False))
    path = tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    imgs = write_dsprites_npz(path, factors)
    source = open_dataset(DataConfig(dataset="dsprites", image_size=64, channels=1), data_path=str(tmp_path))
    assert isinstance(source, FileDSprites) and len(source) == 300
    got = source.images(torch.arange(300), CPU)[:, 0].numpy()
    assert np.array_equal(got, imgs.astype(np.float32))
    assert np.array_equal(source.factors(np.arange(300)), factors)
    observed = source.observations(factors[:7], CPU)
    generated = GeneratedDSprites(1, 64).observations(factors[:7], CPU)
    assert torch.equal(observed, generated)


def test_missing_dsprites_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.delenv("JVAE_DATA", raising=False)
    with pytest.raises(
        DataNotFoundError,
        match="data not found: put dsprites_ndarray.*at \\$JVAE_DATA/dsprites, or pass --data",
    ):
        open_dataset(DataConfig(dataset="dsprites", image_size=64, channels=1))
    monkeypatch.setenv("JVAE_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=str(tmp_path / "dsprites")):
        open_dataset(DataConfig(dataset="dsprites", image_size=64, channels=1))


def test_corrupt_or_foreign_npz_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="cannot read as a dSprites npz"):
        FileDSprites(broken, 1, 64)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, pictures=np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(DataError, match="not a dSprites npz"):
        FileDSprites(foreign, 1, 64)
    truncated = tmp_path / "truncated.npz"
    write_dsprites_npz(truncated, index_to_factors(np.arange(50)))
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError):
        FileDSprites(truncated, 1, 64)
    assert zipfile.is_zipfile(foreign)


def test_other_datasets_fail_with_where_to_put_them(tmp_path):
    for dataset, size, channels, expected in [
        ("mnist", 32, 1, "MNIST/raw/train-images-idx3-ubyte"),
        ("chairs", 64, 1, "rendered_chairs/<chair>/renders"),
        ("celeba", 64, 3, "img_align_celeba"),
    ]:
        with pytest.raises(DataNotFoundError, match=f"data not found: put .*{expected}"):
            open_dataset(
                DataConfig(dataset=dataset, image_size=size, channels=channels),
                data_path=str(tmp_path / "none"),
            )


def test_gpu_style_rendering_and_device_side_indexing_draw_the_same_sprites():
    from jvae.data.dsprites import GeneratedDSprites, index_to_factors

    indices = torch.randint(737280, (500,), generator=torch.Generator().manual_seed(0))
    factors = torch.from_numpy(index_to_factors(indices.numpy()))
    assert torch.equal(render(factors, CPU, select=True), render(factors, CPU, select=False))
    source = GeneratedDSprites(1, 64)
    assert torch.equal(source.images(indices, CPU), source.observations(factors.numpy(), CPU))


def test_testing_only_a_window_around_each_centre_misses_no_sprite_pixel():
    """The largest sprites, in every orientation, at the frame's edges: the same pixels as testing every one
    of the 64 x 64 pixels against the shape, which is what the renderer avoids doing."""
    from jvae.data.dsprites import _inside_ellipse, _inside_heart, _inside_square

    factors = torch.tensor(
        [
            (s, c, o, x, y)
            for s in range(3)
            for c in (4, 5)
            for o in range(0, 40, 3)
            for x in (0, 31)
            for y in (0, 31)
        ]
    )
    scale = (0.5 + 0.1 * factors[:, 1].float()).view(-1, 1, 1)
    angle = (factors[:, 2].float() * (2 * np.pi / 39)).view(-1, 1, 1)
    centre_x = (16 + 32 * factors[:, 3].float() / 31).view(-1, 1, 1)
    centre_y = (16 + 32 * factors[:, 4].float() / 31).view(-1, 1, 1)
    grid = torch.arange(64, dtype=torch.float32)
    dx, dy = grid.view(1, 1, 64) - centre_x, grid.view(1, 64, 1) - centre_y
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    u, v = cos * dx + sin * dy, cos * dy - sin * dx
    tests = (_inside_square, _inside_ellipse, _inside_heart)
    full_frame = torch.stack([tests[int(s)](u[i], v[i]) for i, s in enumerate(factors[:, 0])]).float()
    assert torch.equal(render(factors, CPU)[:, 0], full_frame)
    assert torch.equal(render(factors, CPU, select=True)[:, 0], full_frame)
    assert full_frame[:, 0].sum() == 0 and full_frame.sum() > 0  # nothing reaches the border, and all draws
