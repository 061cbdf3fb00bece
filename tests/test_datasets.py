"""Datasets read from real files the tests write: scikit-learn's digits, image folders, MNIST's IDX files."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from jvae_cli.data import open_dataset
from jvae_cli.errors import DataError, DataNotFoundError
from jvae_cli.presets import DataConfig

CPU = torch.device("cpu")


def test_digits_are_real_labelled_images_upscaled():
    source = open_dataset(DataConfig(dataset="digits", image_size=32, channels=1))
    assert len(source) == 1797 and sorted(torch.unique(source.labels).tolist()) == list(range(10))
    images = source.images(torch.arange(10), CPU)
    assert images.shape == (10, 1, 32, 32) and images.min() >= 0 and images.max() <= 1
    assert images.mean() > 0.1  # strokes, not blank
    rgb = open_dataset(DataConfig(dataset="digits", image_size=64, channels=3)).images(torch.arange(2), CPU)
    assert rgb.shape == (2, 3, 64, 64)


@pytest.fixture
def folder(tmp_path):
    """Grey, RGB, RGBA, 16-bit, a JPEG, nested folders, a corrupt file and a truncated PNG."""
    root = tmp_path / "pictures"
    (root / "sub").mkdir(parents=True)
    gradient = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1))  # 48 x 64, not square
    Image.fromarray(gradient, "L").save(root / "grey.png")
    Image.fromarray(np.stack([gradient] * 3, -1), "RGB").save(root / "sub" / "colour.jpg", quality=95)
    Image.fromarray(np.stack([gradient] * 4, -1), "RGBA").save(root / "sub" / "alpha.png")
    Image.fromarray(gradient.astype(np.uint16) * 257).save(root / "deep.png")  # a 16-bit PNG
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    whole = (root / "grey.png").read_bytes()
    (root / "sub" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_fails_on_an_unreadable_image_by_default(folder):
    with pytest.raises(DataError, match="cannot read image .*(corrupt|truncated).png.*on_unreadable"):
        open_dataset(DataConfig(dataset="folder", image_size=32, channels=1), data_path=str(folder))


def test_folder_skips_and_lists_unreadable_images_when_asked(folder):
    config = DataConfig(dataset="folder", image_size=32, channels=3, on_unreadable="skip")
    source = open_dataset(config, data_path=str(folder))
    assert len(source) == 4 and {p.name for p, _ in source.skipped} == {"corrupt.png", "truncated.png"}
    images = source.images(torch.arange(4), CPU)
    assert images.shape == (4, 3, 32, 32)
    by_name = {p.name: images[i] for i, p in enumerate(source.paths)}
    # every readable format gives the same left-to-right ramp, 16-bit and alpha included
    for name in ("colour.jpg", "alpha.png", "deep.png"):
        assert torch.allclose(by_name[name], by_name["grey.png"], atol=0.03), name
    assert by_name["grey.png"][0, 0, -1] > by_name["grey.png"][0, 0, 0] + 0.6  # centre crop keeps 32..220


def test_folder_errors_name_the_problem(tmp_path, monkeypatch):
    monkeypatch.delenv("JVAE_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match="pass --data"):
        open_dataset(DataConfig(dataset="folder", image_size=32, channels=1))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        open_dataset(
            DataConfig(dataset="folder", image_size=32, channels=1), data_path=str(tmp_path / "empty")
        )


def write_idx(root, prefix: str, images: np.ndarray, labels: np.ndarray, compress: bool = False) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    image_bytes = struct.pack(">IIII", 2051, len(images), 28, 28) + images.astype(np.uint8).tobytes()
    label_bytes = struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()
    for name, payload in (
        (f"{prefix}-images-idx3-ubyte", image_bytes),
        (f"{prefix}-labels-idx1-ubyte", label_bytes),
    ):
        (raw / name).write_bytes(payload)
        if compress:
            (raw / f"{name}.gz").write_bytes(gzip.compress(payload))


def test_mnist_reads_idx_files_resized_to_32_with_labels(tmp_path):
    rng = np.random.default_rng(0)
    images = np.zeros((20, 28, 28), np.uint8)
    for i in range(20):
        images[i, 4 + i % 10 : 14 + i % 10, 8:20] = 255  # a bar that moves down
    labels = rng.integers(0, 10, 20)
    write_idx(tmp_path, "train", images, labels)
    write_idx(tmp_path, "t10k", images[:5], labels[:5])
    source = open_dataset(DataConfig(dataset="mnist", image_size=32, channels=1), data_path=str(tmp_path))
    assert len(source) == 20 and torch.equal(source.labels, torch.from_numpy(labels).long())
    batch = source.images(torch.arange(20), CPU)
    assert batch.shape == (20, 1, 32, 32)
    rows = batch[:, 0].mean(dim=2).argmax(dim=1)
    assert (rows[1:10] >= rows[:9]).all() and rows[9] > rows[0]  # resizing keeps the bar where it was


def test_digits_preset_trains_and_evaluates_with_label_metrics(cli, tmp_path):
    run = tmp_path / "run"
    result = cli(
        "train", "--preset", "digits", "--set", "train.steps=60", "--set", "train.log_every=30", "--out", run
    )
    assert result.exit_code == 0, result.output
    result = cli("evaluate", run / "ckpt.pt", "--fast", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert set(report["metrics"]) == {"cluster_accuracy", "linear_probe", "elbo"}
    assert 0.1 <= report["metrics"]["cluster_accuracy"]["d0"] <= 1.0
    assert report["metrics"]["linear_probe"] > 0.3  # even a briefly trained encoder separates digits


def test_training_on_a_folder_reports_what_it_left_out(cli, folder, tmp_path):
    for i in range(70):
        Image.fromarray(np.full((40, 40), i * 3, np.uint8), "L").save(folder / f"plain{i}.png")
    overrides = ['data.dataset="folder"', 'data.source="file"', 'data.on_unreadable="skip"', "train.steps=2"]
    overrides += ["data.image_size=32", 'model.architecture="conv32"', "train.log_every=1"]
    args = [arg for o in overrides for arg in ("--set", o)]
    result = cli("train", "--preset", "quickstart", *args, "--data", folder, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "left out 2 unreadable image(s)" in result.stderr
