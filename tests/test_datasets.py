"""Datasets read from real files the tests write: scikit-learn's digits, image folders, MNIST's IDX files."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from jvae.base.errors import DataError, DataNotFoundError
from jvae.data import open_dataset
from jvae.modeling.presets import DataConfig

CPU = torch.device("cpu")


def test_digits_are_real_labelled_images_upscaled():
    source = open_dataset(DataConfig(dataset="digits", image_size=32, channels=1))
    assert len(source) == 1797 and sorted(torch.unique(source.labels).tolist()) == list(range(10))
    images = source.images(torch.arange(10), CPU)
    assert images.shape == (10, 1, 32, 32) and images.min() >= 0 and images.max() <= 1
    assert images.mean() > 0.1  # strokes, not blank
    rgb = open_dataset(DataConfig(dataset="digits", image_size=64, channels=3)).images(torch.arange(2), CPU)
    assert rgb.shape == (2, 3, 64, 64)


def test_digits_read_without_scikit_learn_are_scikit_learns_digits():
    """jvae reads the bundled CSV itself (importing scikit-learn costs every command a second); the images
    and labels must be exactly what scikit-learn's own loader gives."""
    from sklearn.datasets import load_digits

    from jvae.data.digits import _bundled

    images, labels = _bundled()
    reference = load_digits()
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)


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
    test = open_dataset(DataConfig(dataset="mnist", image_size=32, channels=1, split="test"), str(tmp_path))
    assert len(test) == 5 and torch.equal(test.labels, torch.from_numpy(labels[:5]).long())
    assert torch.equal(test.images(torch.arange(5), CPU), batch[:5])


def test_a_split_is_refused_where_the_dataset_has_none(cli, tmp_path):
    result = cli("train", "--preset", "digits", "--set", "data.split=test", "--out", tmp_path / "run")
    assert result.exit_code == 2 and "'digits' has no test split" in result.stderr
    assert not (tmp_path / "run").exists()


def test_digits_preset_trains_and_evaluates_with_label_metrics(cli, tmp_path):
    run = tmp_path / "run"
    result = cli(
        "train", "--preset", "digits", "--set", "train.steps=60", "--set", "train.log_every=30", "--out", run
    )
    assert result.exit_code == 0, result.output
    result = cli("evaluate", run / "ckpt.pt", "--fast", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert set(report["metrics"]) == {
        "cluster_accuracy",
        "linear_probe",
        "elbo",
        "unsupervised",
        "discrete_code",
    }
    assert report["metrics"]["unsupervised"]["active_units"] >= 0
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


def test_folder_is_decoded_once_then_read_from_the_cache(folder, monkeypatch):
    import jvae.data.folder as folder_module

    config = DataConfig(dataset="folder", image_size=32, channels=1, on_unreadable="skip")
    first = open_dataset(config, data_path=str(folder)).images(torch.arange(4), CPU)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(folder_module, "load_image", no_decoding)
    monkeypatch.setattr(folder_module, "uint8_decoder", lambda *a, **k: no_decoding)
    second = open_dataset(config, data_path=str(folder)).images(torch.arange(4), CPU)
    assert torch.equal(first, second)


def make_chairs(root, chairs: int = 3):
    """A rendered_chairs tree in the real naming pattern: 2 elevations x 4 azimuths per chair."""
    for c in range(chairs):
        renders = root / "rendered_chairs" / f"chair_{c:03d}" / "renders"
        renders.mkdir(parents=True)
        for e, elevation in enumerate((20, 30)):
            for a, azimuth in enumerate((0, 11, 22, 34)):
                picture = np.full((600, 600), 255, np.uint8)
                picture[150 + 60 * a : 250 + 60 * a, 120 + 40 * c : 200 + 40 * c + 50 * e] = 40
                name = f"image_{a * 2 + e + 1:03d}_p{elevation:03d}_t{azimuth:03d}_r096.png"
                Image.fromarray(picture, "L").save(renders / name)


def test_chairs_parse_views_from_file_names_and_split_by_chair(tmp_path):
    make_chairs(tmp_path, chairs=12)
    everything = open_dataset(
        DataConfig(dataset="chairs", image_size=64, channels=1), data_path=str(tmp_path)
    )
    assert len(everything) == 12 * 8
    assert everything.factor_names == ["chair", "elevation", "azimuth"] and everything.factor_sizes == [
        12,
        2,
        4,
    ]
    assert everything.values["azimuth"] == [0, 11, 22, 34] and everything.values["elevation"] == [20, 30]
    test = open_dataset(
        DataConfig(dataset="chairs", image_size=64, channels=1, split="test"), data_path=str(tmp_path)
    )
    train = open_dataset(
        DataConfig(dataset="chairs", image_size=64, channels=1, split="train"), data_path=str(tmp_path)
    )
    assert set(test.values["chair"]) == {"chair_000", "chair_010"} and len(train) + len(test) == len(
        everything
    )
    assert not set(test.values["chair"]) & set(train.values["chair"])
    first, later = everything.observations(np.array([[0, 0, 0], [0, 0, 3]]), CPU)

    def dark_rows(image: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(image[0].min(dim=1).values < 0.5).flatten().float()

    assert dark_rows(later).mean() > dark_rows(first).mean() + 10  # azimuth index 3 was drawn lower


def test_celeba_crops_reads_attributes_and_partition(tmp_path):
    folder = tmp_path / "img_align_celeba"
    folder.mkdir()
    names = [f"{i:06d}.jpg" for i in range(1, 7)]
    for i, name in enumerate(names):
        picture = np.zeros((218, 178, 3), np.uint8)
        picture[40:188, 15:163] = (40 * i, 100, 200)  # the documented crop box is the only coloured part
        Image.fromarray(picture).save(folder / name, quality=95)
    attributes = ["Smiling", "Male"]
    lines = [str(len(names)), " ".join(attributes)] + [
        f"{n} {1 if i % 2 else -1} {-1 if i < 3 else 1}" for i, n in enumerate(names)
    ]
    (tmp_path / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "list_eval_partition.txt").write_text(
        "".join(f"{n} {0 if i < 4 else 2}\n" for i, n in enumerate(names))
    )
    source = open_dataset(DataConfig(dataset="celeba", image_size=64, channels=3), data_path=str(tmp_path))
    assert len(source) == 6 and source.attribute_names == attributes
    assert source.attributes[:, 0].tolist() == [0, 1, 0, 1, 0, 1] and source.attributes[:, 1].tolist() == [
        0,
        0,
        0,
        1,
        1,
        1,
    ]
    image = source.images(torch.tensor([5]), CPU)[0]
    assert (
        image.shape == (3, 64, 64) and image[2].min() > 0.6
    )  # nothing black from outside the crop (blue is 0.78, JPEG edges lower)
    test = open_dataset(
        DataConfig(dataset="celeba", image_size=64, channels=3, split="test"), data_path=str(tmp_path)
    )
    assert [p.name for p in test.paths] == names[4:]


def write_mpi3d(path, count: int) -> np.ndarray:
    from jvae.data.mpi3d import index_to_factors

    factors = index_to_factors(np.arange(count))
    images = np.zeros((count, 64, 64, 3), np.uint8)
    images[:, :, :, 0] = (factors[:, 6] * 6)[:, None, None]  # red encodes the vertical axis
    images[:, :, :, 1] = (factors[:, 5] * 6)[:, None, None]  # green the horizontal axis
    np.savez_compressed(path, images=images)
    return factors


def test_mpi3d_reads_its_npz_in_the_published_factor_order(tmp_path):
    from jvae.data.mpi3d import COUNT, FACTOR_SIZES

    assert COUNT == 1036800 and FACTOR_SIZES == [6, 6, 2, 3, 3, 40, 40]
    write_mpi3d(
        tmp_path / "mpi3d_toy.npz", 3200
    )  # the first 3200 combinations: two horizontal rows of 40 x 40
    source = open_dataset(DataConfig(dataset="mpi3d", image_size=64, channels=3), data_path=str(tmp_path))
    assert len(source) == 3200 and source.factor_names[-2:] == ["horizontal", "vertical"]
    image = source.observations(np.array([[0, 0, 0, 0, 0, 1, 7]]), CPU)[0]
    assert image[0, 0, 0] == pytest.approx(7 * 6 / 255) and image[1, 0, 0] == pytest.approx(6 / 255)
    drawn = source.sample_factors(50, np.random.RandomState(0))
    assert (drawn[:, :4] == 0).all() and drawn[:, 4].max() <= 1
    with pytest.raises(DataError, match="3200 of the 1036800"):
        source.observations(np.array([[5, 5, 1, 2, 2, 39, 39]]), CPU)
    grey = open_dataset(DataConfig(dataset="mpi3d", image_size=32, channels=1), data_path=str(tmp_path))
    assert grey.images(torch.arange(3), CPU).shape == (3, 1, 32, 32)


def test_broken_npz_files_are_clear_errors(tmp_path):
    (tmp_path / "mpi3d_toy.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DataError, match="cannot read as an MPI3D npz"):
        open_dataset(DataConfig(dataset="mpi3d", image_size=64, channels=3), data_path=str(tmp_path))
    with pytest.raises(DataNotFoundError, match="mpi3d_toy.npz"):
        open_dataset(DataConfig(dataset="mpi3d", image_size=64, channels=3), data_path=str(tmp_path / "none"))


def test_dsprites_download_is_verified_then_loaded(cli, server, tmp_path, monkeypatch):
    import jvae.data.dsprites as dsprites_module
    from jvae.data.dsprites import index_to_factors, render

    base, payloads = server
    factors = index_to_factors(np.arange(0, 737280, 5000))
    imgs = render(torch.from_numpy(factors), CPU)[:, 0].numpy().astype(np.uint8)
    classes = np.concatenate([np.zeros((len(factors), 1), np.int64), factors], axis=1)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, imgs=imgs, latents_classes=classes, latents_values=classes.astype(float))
    payloads["/dsprites.npz"] = buffer.getvalue()
    monkeypatch.setattr(dsprites_module, "URL", base + "/dsprites.npz")
    monkeypatch.setattr(dsprites_module, "MD5", hashlib.md5(buffer.getvalue()).hexdigest())
    config = DataConfig(dataset="dsprites", image_size=64, channels=1, download=True)
    source = open_dataset(config, data_path=str(tmp_path / "data"))
    assert (
        len(source) == len(factors)
        and (tmp_path / "data" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz").is_file()
    )

    monkeypatch.setattr(dsprites_module, "MD5", "0" * 32)
    with pytest.raises(DataError, match="expected 0{32}: not the published file"):
        open_dataset(config, data_path=str(tmp_path / "other"))
    assert not list((tmp_path / "other").glob("*"))
    monkeypatch.setattr(dsprites_module, "URL", base + "/dsprites.npz/cut")
    with pytest.raises(DataError, match="try again|cannot download"):
        open_dataset(config, data_path=str(tmp_path / "cut"))
    assert not list((tmp_path / "cut").glob("*"))
    monkeypatch.setattr(dsprites_module, "URL", base + "/missing.npz")
    result = cli(
        "train",
        "--preset",
        "dsprites",
        "--set",
        "data.download=true",
        "--data",
        tmp_path / "x",
        "--out",
        tmp_path / "run",
    )
    assert result.exit_code == 1 and "cannot download" in result.stderr and "(Not Found)" in result.stderr


def test_mnist_download_goes_through_torchvision_to_the_data_root(server, tmp_path, monkeypatch):
    from torchvision import datasets

    base, payloads = server
    images = np.zeros((8, 28, 28), np.uint8)
    images[:, 10:18, 10:18] = 200
    labels = np.arange(8) % 10
    staging = tmp_path / "staging"
    write_idx(staging, "train", images, labels, compress=True)
    write_idx(staging, "t10k", images[:2], labels[:2], compress=True)
    resources = []
    for path in sorted((staging / "MNIST" / "raw").glob("*.gz")):
        payloads[f"/{path.name}"] = path.read_bytes()
        resources.append((path.name, hashlib.md5(path.read_bytes()).hexdigest()))
    monkeypatch.setattr(datasets.MNIST, "mirrors", [base + "/"])
    monkeypatch.setattr(datasets.MNIST, "resources", resources)
    config = DataConfig(dataset="mnist", image_size=32, channels=1, download=True)
    source = open_dataset(config, data_path=str(tmp_path / "root"))
    assert len(source) == 8 and (tmp_path / "root" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert source.labels.tolist() == labels.tolist()


def test_generated_sprites_are_binary_and_grow_with_scale():
    from jvae.data.dsprites import render

    factors = torch.tensor([[s, scale, 7, 16, 16] for s in range(3) for scale in range(6)])
    images = render(factors, CPU)
    assert set(torch.unique(images).tolist()) <= {0.0, 1.0}
    areas = images.sum(dim=(1, 2, 3)).view(3, 6)
    assert (areas[:, 1:] > areas[:, :-1]).all()


@pytest.mark.parametrize("preset", ["chairs", "mpi3d", "celeba"])
def test_the_paper_presets_train_on_their_dataset_layouts_through_the_cli(cli, tmp_path, preset):
    data = tmp_path / "data"
    if preset == "chairs":
        make_chairs(data, chairs=2)
    elif preset == "mpi3d":
        data.mkdir()
        write_mpi3d(data / "mpi3d_real.npz", 100)
    else:
        (data / "img_align_celeba").mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.full((218, 178, 3), 20 * i, np.uint8)).save(
                data / "img_align_celeba" / f"{i:06d}.jpg"
            )
    sets = ["train.steps=2", "train.batch_size=8", "train.log_every=1"]
    args = [arg for s in sets for arg in ("--set", s)]
    result = cli("train", "--preset", preset, *args, "--data", data, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "traversals.gif").is_file()


def test_an_unreadable_chair_render_is_named(tmp_path):
    make_chairs(tmp_path, chairs=1)
    broken = next((tmp_path / "rendered_chairs" / "chair_000" / "renders").glob("*.png"))
    broken.write_bytes(b"\x89PNG\r\n\x1a\n cut")
    with pytest.raises(
        DataError, match=f"1 chairs image\\(s\\) cannot be read; the first: cannot read image {broken}"
    ):
        open_dataset(DataConfig(dataset="chairs", image_size=64, channels=1), data_path=str(tmp_path))


@pytest.mark.parametrize(
    "preset,extra",
    [
        ("dsprites-vae", ['model.architecture="conv32"']),
        ("dsprites-beta-vae", ['model.architecture="conv32"']),
        ("dsprites-cc-beta-vae", ['model.architecture="conv32"']),
        ("dsprites-grouped-vae", ["model.hidden=64"]),
        ("dsprites-beta-tcvae", ['model.architecture="conv32"', "train.batch_size=32"]),
        ("dsprites-factor-vae", ['model.architecture="conv32"']),
    ],
)
def test_baseline_presets_train_and_work_with_every_command(cli, tmp_path, preset, extra):
    sets = ['data.source="generated"', "data.image_size=32", "train.steps=3", "train.log_every=1", *extra]
    args = [arg for s in sets for arg in ("--set", s)]
    run = tmp_path / "run"
    assert cli("train", "--preset", preset, *args, "--out", run).exit_code == 0
    ckpt = run / "ckpt.pt"
    assert cli("traverse", ckpt, "--all", "--out", tmp_path / "t.gif").exit_code == 0
    assert cli("sample", ckpt, "--n", "4", "--out", tmp_path / "s.png").exit_code == 0
    assert cli("encode", ckpt, "dsprites", "--limit", "10", "--out", tmp_path / "c.csv").exit_code == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3 and records[0]["kl_disc"] == []
