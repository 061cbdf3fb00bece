"""Tests generated over the registries: every model kind and every dataset jvae knows gets the same checks,
so a new one is covered the moment its module exists."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from jvae.base.errors import DataNotFoundError, PresetError
from jvae.base.sections import LossBase
from jvae.data.capabilities import GroundTruth, ground_truth, labels_of
from jvae.data.registry import DATASETS
from jvae.kinds import KINDS
from jvae.modeling.presets import DataConfig, load_preset, preset_names
from jvae.training.steps import Stepper

# ----------------------------------------------------------------------------------------------- kinds


def _presets_of(kind: str) -> list[str]:
    return [name for name in preset_names() if load_preset(name)[1].loss.kind == kind]


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_has_a_preset_that_builds_and_takes_a_step(kind):
    from jvae.data import open_dataset

    names = _presets_of(kind)
    assert names, f"no preset trains {kind}"
    local = [n for n in names if load_preset(n)[1].data.dataset in ("dsprites", "digits")]
    if not local:
        pytest.skip(f"every {kind} preset reads files this test does not have ({', '.join(names)})")
    sets = ["train.batch_size=8", "train.precision=fp32"]
    if load_preset(local[0])[1].data.dataset == "dsprites":
        sets.append("data.source=generated")
    _, preset = load_preset(local[0], sets)
    source = open_dataset(preset.data)
    stepper = Stepper.create(preset, source, torch.device("cpu"))
    terms, extra = stepper(0)
    assert math.isfinite(terms.loss.item())
    assert (stepper.critic is not None) == (KINDS[kind].critic is not None)
    if stepper.critic is not None:
        assert math.isfinite(float(extra["critic_loss"]))


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_refuses_another_kinds_field_naming_both(kind):
    own = set(KINDS[kind].config.model_fields)
    foreign = next(
        (field, other)
        for other, entry in KINDS.items()
        for field, info in entry.config.model_fields.items()
        if field not in own and info.annotation in (float, float | None)
    )
    name = _presets_of(kind)[0]
    with pytest.raises(PresetError) as refused:
        load_preset(name, [f"loss.{foreign[0]}=1.0"])
    assert f"loss.{foreign[0]} is not used by kind {kind!r}" in str(refused.value)
    assert len(str(refused.value).splitlines()) == 1


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_documents_its_fields_and_keeps_the_shared_ones(kind):
    config = KINDS[kind].config
    assert issubclass(config, LossBase)
    assert set(LossBase.model_fields) <= set(config.model_fields)
    for field, info in config.model_fields.items():
        assert info.title, f"{kind}: loss.{field} has no title"


def test_a_kind_that_trains_a_critic_stays_in_one_process():
    for kind in KINDS.values():
        if kind.critic is not None:
            assert not kind.multiprocess, kind.name


# ----------------------------------------------------------------------------------------------- datasets


def _mnist(root, folder: str = "MNIST"):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    images, labels = np.zeros((20, 28, 28), np.uint8), np.arange(20) % 10
    images[:, 10:18, 10:18] = 255
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, 20, 28, 28) + images.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, 20) + labels.astype(np.uint8).tobytes()
        )
    return root


def _chairs(root):
    for c in range(2):
        renders = root / "rendered_chairs" / f"chair_{c}" / "renders"
        renders.mkdir(parents=True)
        for a, azimuth in enumerate((0, 11)):
            picture = np.full((600, 600), 255, np.uint8)
            picture[200:300, 100 * a + 100 * c : 100 * a + 100 * c + 80] = 0
            Image.fromarray(picture, "L").save(renders / f"image_{a + 1:03d}_p020_t{azimuth:03d}_r096.png")
    return root


def _celeba(root):
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((218, 178, 3), 60 * i, np.uint8)).save(folder / f"{i + 1:06d}.jpg")
    rows = "".join(f"{i + 1:06d}.jpg {1 - 2 * (i % 2)}\n" for i in range(3))
    (root / "list_attr_celeba.txt").write_text(f"3\nSmiling\n{rows}")
    return root


def _mpi3d(root):
    from jvae.data.mpi3d import index_to_factors

    root.mkdir(parents=True)
    factors = index_to_factors(np.arange(40))
    images = np.zeros((40, 64, 64, 3), np.uint8)
    images[:, :, :, 0] = (factors[:, 6] * 6)[:, None, None]
    np.savez_compressed(root / "mpi3d_toy.npz", images=images)
    return root


def _folder(root):
    root.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((40, 50), 80 * i, np.uint8), "L").save(root / f"{i}.png")
    return root


def _shapes3d(root):
    import h5py

    root.mkdir(parents=True)
    with h5py.File(root / "3dshapes.h5", "w") as handle:
        handle["images"] = np.full((30, 64, 64, 3), 128, np.uint8)
        handle["labels"] = np.zeros((30, 6))
    return root


def _painting(root):
    root.mkdir(parents=True)
    Image.fromarray(np.full((274, 350, 3), 90, np.uint8)).save(root / "The_Scream.jpg")
    return root


def _smallnorb(root):
    import struct as packing

    from jvae.data.smallnorb import PARTS

    root.mkdir(parents=True)
    for stem in PARTS.values():
        for kind, magic, values in (
            ("dat", 0x1E3D4C55, np.full((2, 2, 96, 96), 100, np.uint8)),
            ("cat", 0x1E3D4C54, np.array([0, 1], np.int32)),
            ("info", 0x1E3D4C54, np.array([[4, 0, 0, 0], [6, 1, 2, 3]], np.int32)),
        ):
            dims = list(values.shape) + [1] * (3 - values.ndim)
            header = packing.pack("<Ii" + "i" * len(dims), magic, values.ndim, *dims)
            (root / f"{stem}-{kind}.mat").write_bytes(header + values.tobytes())
    return root


def _cars3d(root):
    from scipy.io import savemat

    (root / "cars").mkdir(parents=True)
    savemat(root / "cars" / "car_000_mesh.mat", {"im": np.full((16, 16, 3, 24, 4), 90, np.uint8)})
    return root


BUILDERS = {  # a small copy of each dataset in its publisher's layout; None: nothing to put on disk
    "dsprites": None,
    "color-dsprites": None,
    "noisy-dsprites": None,
    "scream-dsprites": _painting,
    "shapes3d": _shapes3d,
    "smallnorb": _smallnorb,
    "cars3d": _cars3d,
    "digits": None,
    "mnist": _mnist,
    "fashion-mnist": lambda root: _mnist(root, "FashionMNIST"),
    "chairs": _chairs,
    "celeba": _celeba,
    "mpi3d": _mpi3d,
    "folder": _folder,
}


def _config(name: str, **fields: str) -> DataConfig:
    size = 32 if name in ("mnist", "fashion-mnist", "digits") else 64
    chosen = {"source": "generated" if DATASETS[name].generated else "file", **fields}
    return DataConfig(dataset=name, image_size=size, channels=1, **chosen)


def test_every_dataset_has_a_small_copy_here():
    assert set(BUILDERS) == set(DATASETS)


@pytest.mark.parametrize("name", [n for n, builder in BUILDERS.items() if builder is not None])
def test_every_dataset_on_disk_says_where_to_put_what(name, tmp_path):
    entry = DATASETS[name]
    missing = tmp_path / "nothing-here"
    with pytest.raises(DataNotFoundError) as absent:
        entry.open(_config(name, source="file"), str(missing))
    message = str(absent.value)
    assert message.startswith("data not found: put ") and entry.layout.expected in message
    assert str(missing) in message and entry.layout.how_to_get in message


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_dataset_offers_what_its_entry_declares(name, tmp_path):
    entry, build = DATASETS[name], BUILDERS[name]
    root = build(tmp_path / name) if build is not None else None
    source = entry.open(_config(name), str(root) if root is not None else None)
    assert len(source) > 0
    batch = source.images(torch.arange(2), torch.device("cpu"))
    assert batch.shape[1:] == (1, source.image_size, source.image_size)
    assert float(batch.min()) >= 0.0 and float(batch.max()) <= 1.0
    assert (ground_truth(source) is not None) == entry.factors
    assert (labels_of(source) is not None) == entry.labels
    if entry.factors:
        factors = ground_truth(source)
        assert isinstance(factors, GroundTruth) and len(factors.factor_names) == len(factors.factor_sizes)
    if entry.classes is not None:
        assert int(labels_of(source).max()) < entry.classes
    if entry.attributes:
        assert source.attributes.shape[0] == len(source)


def test_the_preset_schema_takes_its_dataset_names_from_the_registry():
    for name in DATASETS:
        assert _config(name).dataset == name
    with pytest.raises(PresetError, match="data.dataset"):
        load_preset("digits", ["data.dataset=imagenet"])


def test_checkpoints_written_before_the_kinds_had_their_own_sections_still_load(tmp_path):
    """Older checkpoints store one flat loss section: every kind's field, the unused ones null."""
    from jvae.modeling.builder import build_model
    from jvae.modeling.checkpoint import Checkpoint, load_checkpoint

    name, preset = load_preset("dsprites-beta-tcvae", ["data.source=generated"])
    payload = Checkpoint.new(name, preset, build_model(preset).state_dict()).to_payload()
    flat = dict.fromkeys(
        ["continuous_capacity", "discrete_capacity", "specific_capacity", "adversary_lr", "adversary_weight"]
        + ["classifier_reads", "groups"]
    )
    payload["preset"]["loss"] = {**flat, **payload["preset"]["loss"], "estimator": None}
    torch.save(payload, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert loaded.preset.loss.kind == "beta-tcvae" and loaded.preset.loss.estimator == "mws"
