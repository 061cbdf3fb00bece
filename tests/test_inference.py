"""traverse, sample, encode, edit and units on a small model trained in the test session."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jvae.data.dsprites import render
from jvae.modeling.checkpoint import load_checkpoint, read_checkpoint
from jvae.modeling.latents import Unit, traversal_images


@pytest.fixture
def ckpt(sprites_ckpt) -> Path:
    """The session's trained sprites model (conftest.py): four continuous units, one 4-way variable."""
    return sprites_ckpt


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A folder of dSprites PNGs at 64x64 (jvae resizes them to the model's 32x32), one in a sub-folder."""
    folder = tmp_path_factory.mktemp("images")
    factors = torch.tensor([[0, 5, 0, 8, 8], [1, 3, 10, 24, 12], [2, 4, 5, 16, 24], [0, 2, 20, 28, 28]])
    for i, image in enumerate(render(factors, torch.device("cpu"))[:, 0]):
        target = folder / ("nested" if i == 3 else "") / f"sprite{i}.png"
        target.parent.mkdir(exist_ok=True)
        Image.fromarray((image.numpy() * 255).astype(np.uint8)).save(target)
    return folder


def gif_frames(path: Path) -> tuple[Image.Image, list[np.ndarray]]:
    gif = Image.open(path)
    frames = []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("RGB")))
    return gif, frames


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------- traverse


def test_traverse_one_unit_writes_a_looping_gif(cli, ckpt, tmp_path):
    out = tmp_path / "rot.gif"
    result = cli(
        "traverse", ckpt, "--unit", "2", "--out", out, "--frames", "6", "--duration", "50", "--scale", "2"
    )
    assert result.exit_code == 0, result.output
    gif, frames = gif_frames(out)
    assert gif.n_frames == 10 and gif.info["loop"] == 0 and gif.info["duration"] == 50  # 6 forward, 4 back
    assert all(f.dtype == np.uint8 for f in frames)
    assert gif.size == (96 + 2 + 66, 2 + 66)  # label column, one 32x32 tile at scale 2


def test_traverse_all_as_png_has_a_row_per_unit_and_a_column_per_step(cli, ckpt, tmp_path):
    out = tmp_path / "all.png"
    assert cli("traverse", ckpt, "--all", "--out", out).exit_code == 0
    assert Image.open(out).size == (96 + 2 + 10 * 34, 2 + 5 * 34)
    assert cli("traverse", ckpt, "--unit", "d0", "--out", out).exit_code == 0
    assert Image.open(out).size == (96 + 2 + 4 * 34, 2 + 34)  # one column per category
    assert (
        cli("traverse", ckpt, "--unit", "1", "--samples", "3", "--range", "-5", "5", "--out", out).exit_code
        == 0
    )
    assert Image.open(out).size[1] == 2 + 3 * 34


def test_traverse_from_an_image(cli, ckpt, images, tmp_path):
    out = tmp_path / "from.gif"
    result = cli("traverse", ckpt, "--all", "--from", images / "sprite1.png", "--out", out)
    assert result.exit_code == 0 and Image.open(out).n_frames == 18


def test_an_unused_unit_changes_images_far_less_than_the_top_unit(ckpt, images):
    loaded = load_checkpoint(ckpt)
    kl = loaded.unit_kl["continuous"]
    top, low = int(np.argmax(kl)), int(np.argmin(kl))
    assert kl[low] < 0.5 < kl[top]
    from jvae.base.images import load_image

    batch = torch.stack([load_image(p, 1, 32) for p in sorted(images.rglob("*.png"))])
    with torch.no_grad():
        bases = loaded.model.encode(batch).mode()
    moves = traversal_images(loaded.model, bases, [Unit("continuous", top), Unit("continuous", low)], 10)
    change = (moves[-1] - moves[0]).abs().mean(dim=(1, 2, 3, 4))  # per unit
    assert change[1] < 0.3 * change[0]


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["--unit", "7"], 2, "unknown unit '7'; this model has continuous units 0..3, discrete d0..d0"),
        (["--unit", "d3"], 2, "unknown unit 'd3'"),
        ([], 2, "choose what to traverse"),
        (["--unit", "1", "--range", "2", "-2"], 2, "LO must be below HI"),
    ],
)
def test_traverse_errors(cli, ckpt, tmp_path, args, code, message):
    result = cli("traverse", ckpt, *args, "--out", tmp_path / "x.gif")
    assert result.exit_code == code and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.gif").exists()


def test_bad_checkpoints_images_and_output_folders(cli, ckpt, tmp_path):
    result = cli("traverse", tmp_path / "missing.pt", "--all", "--out", tmp_path / "x.gif")
    assert result.exit_code == 1 and "checkpoint not found" in result.stderr
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    result = cli("sample", foreign, "--out", tmp_path / "x.png")
    assert result.exit_code == 1 and "not a jvae checkpoint" in result.stderr
    result = cli("traverse", ckpt, "--all", "--out", tmp_path / "nowhere" / "x.gif")
    assert result.exit_code == 1 and "output folder does not exist" in result.stderr
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    result = cli("traverse", ckpt, "--all", "--from", broken, "--out", tmp_path / "x.gif")
    assert result.exit_code == 1 and f"cannot read image {broken}" in result.stderr
    result = cli("traverse", ckpt, "--all", "--out", tmp_path / "x.jpg")
    assert result.exit_code == 2 and "must end in .gif or .png" in result.stderr


# ----------------------------------------------------------------------------------------------- sample


def tiles(path: Path, rows: int, columns: int, side: int = 32, left: int = 0) -> np.ndarray:
    picture = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    return np.array(
        [
            [
                picture[2 + r * (side + 2) : 2 + r * (side + 2) + side, left + 2 + c * (side + 2) :][:, :side]
                for c in range(columns)
            ]
            for r in range(rows)
        ]
    )


def test_per_category_rows_differ_and_samples_in_a_row_are_diverse(cli, ckpt, tmp_path):
    out = tmp_path / "per.png"
    result = cli("sample", ckpt, "--per-category", "--n", "6", "--out", out)
    assert result.exit_code == 0
    grid = tiles(out, 4, 6, left=96)
    row_pairs = [np.abs(grid[a] - grid[b]).mean() for a in range(4) for b in range(a + 1, 4)]
    within_rows = np.mean(
        [np.abs(grid[r, i] - grid[r, j]).mean() for r in range(4) for i in range(6) for j in range(i + 1, 6)]
    )
    assert (
        min(row_pairs) > 0.25 and np.mean(row_pairs) > 0.5
    )  # each category draws differently (0 if ignored)
    assert within_rows > 2.0  # the continuous codes differ from column to column


def test_sample_grid_and_category_conditioning(cli, ckpt, tmp_path):
    out = tmp_path / "s.png"
    assert cli("sample", ckpt, "--n", "10", "--out", out).exit_code == 0
    assert Image.open(out).size == (2 + 4 * 34, 2 + 3 * 34)
    assert cli("sample", ckpt, "--n", "8", "--category", "d0=2", "--out", out, "--seed", "3").exit_code == 0
    result = cli("sample", ckpt, "--category", "d0=9", "--out", out)
    assert result.exit_code == 2 and "d0 takes a category: d0=K with K in 0..3" in result.stderr
    result = cli("sample", ckpt, "--category", "1=2", "--out", out)
    assert result.exit_code == 2 and "continuous unit" in result.stderr


# ----------------------------------------------------------------------------------------------- encode


def test_encode_writes_every_format_and_is_deterministic(cli, ckpt, images, tmp_path):
    paths = sorted(str(p) for p in images.rglob("*.png"))
    for suffix in (".npz", ".csv", ".jsonl"):
        result = cli("encode", ckpt, images, "--out", tmp_path / f"codes{suffix}")
        assert result.exit_code == 0 and "wrote 4 codes" in result.stdout
    npz = np.load(tmp_path / "codes.npz")
    assert list(npz["path"]) == paths and npz["mean"].shape == (4, 4) and npz["d0_probs"].shape == (4, 4)
    assert np.allclose(npz["d0_probs"].sum(1), 1, atol=1e-5) and np.array_equal(
        npz["d0"], npz["d0_probs"].argmax(1)
    )
    with open(tmp_path / "codes.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == paths and float(rows[0]["mean_2"]) == pytest.approx(
        npz["mean"][0, 2], abs=1e-6
    )
    assert set(rows[0]) == {
        "path",
        *(f"mean_{i}" for i in range(4)),
        *(f"logvar_{i}" for i in range(4)),
        *(f"d0_p{k}" for k in range(4)),
        "d0",
    }
    lines = [json.loads(line) for line in (tmp_path / "codes.jsonl").read_text().splitlines()]
    assert lines[1]["discrete"][0]["category"] == int(npz["d0"][1])
    again = tmp_path / "again.npz"
    cli("encode", ckpt, images / "sprite0.png", images / "sprite0.png", "--out", again)
    twice = np.load(again)["mean"]
    first = paths.index(str(images / "sprite0.png"))
    assert np.array_equal(twice[0], twice[1])
    assert np.allclose(twice[0], npz["mean"][first], atol=1e-5)  # other batch sizes round differently


def test_encode_a_dataset_with_reconstructions(cli, ckpt, tmp_path):
    recon = tmp_path / "recon"
    recon.mkdir()
    result = cli(
        "encode",
        ckpt,
        "dsprites",
        "--limit",
        "300",
        "--batch-size",
        "128",
        "--reconstruct",
        recon,
        "--out",
        tmp_path / "d.npz",
    )
    assert result.exit_code == 0
    codes = np.load(tmp_path / "d.npz")
    assert codes["mean"].shape == (300, 4) and codes["path"][299] == "dsprites:299"
    written = sorted(recon.glob("*.png"))
    assert len(written) == 300 and Image.open(written[0]).size == (32, 32)


def test_encode_unreadable_images_stop_or_are_skipped(cli, ckpt, images, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.png").write_bytes((images / "sprite0.png").read_bytes())
    (mixed / "b.png").write_bytes(b"garbage")
    result = cli("encode", ckpt, mixed, "--out", tmp_path / "c.csv")
    assert result.exit_code == 1 and f"cannot read image {mixed / 'b.png'}" in result.stderr
    assert not (tmp_path / "c.csv").exists() and not list(tmp_path.glob(".c.csv*"))
    result = cli("encode", ckpt, mixed, "--skip-unreadable", "--out", tmp_path / "c.csv")
    assert (
        result.exit_code == 0
        and "1 unreadable image(s) skipped" in result.stderr
        and "wrote 1 codes" in result.stdout
    )
    result = cli("encode", ckpt, tmp_path / "nothing-here", "--out", tmp_path / "c.csv")
    assert result.exit_code == 1 and "input not found" in result.stderr
    result = cli("encode", ckpt, mixed, "--out", tmp_path / "c.parquet")
    assert result.exit_code == 2


# ----------------------------------------------------------------------------------------------- units and edit


def test_units_lists_and_names_units_without_touching_the_rest(cli, ckpt, tmp_path):
    named = tmp_path / "named.pt"
    named.write_bytes(ckpt.read_bytes())
    result = cli("units", named, "--json")
    listing = json.loads(result.stdout)
    assert [u["unit"] for u in listing["units"]] == ["0", "1", "2", "3", "d0"]
    assert listing["kl_source"].startswith("data sample") and all(u["kl"] >= 0 for u in listing["units"])
    before = torch.load(named, weights_only=True)
    assert cli("units", named, "--name", "2=height", "--name", "d0=size").exit_code == 0
    after = torch.load(named, weights_only=True)
    assert after["unit_names"] == {"2": "height", "d0": "size"}
    for key, value in before.items():
        if key == "unit_names":
            continue
        if key == "model":
            assert all(torch.equal(value[k], after[key][k]) for k in value)
        elif key != "optimizer" and key != "rng":
            assert after[key] == value, key
    assert "height" in cli("units", named).stdout
    result = cli("units", named, "--name", "1=height")
    assert result.exit_code == 2 and "already unit 2's" in result.stderr
    result = cli("units", named, "--name", "1=unit")
    assert result.exit_code == 2 and "cannot name a unit 'unit'" in result.stderr
    assert cli("units", named, "--name", "d0=").exit_code == 0
    assert read_checkpoint(named).unit_names == {"2": "height"}


def encode_means(cli, ckpt: Path, image: Path, out: Path) -> np.ndarray:
    assert cli("encode", ckpt, image, "--out", out).exit_code == 0
    return np.load(out)["mean"][0]


def test_edit_moves_the_unit_it_is_asked_to_and_keeps_the_input(cli, ckpt, images, tmp_path):
    """encode -> edit --unit k=+2 -> encode: unit k moves by most of +2 and more than any other unit."""
    kl = load_checkpoint(ckpt).unit_kl["continuous"]
    active = [k for k in range(4) if kl[k] > 1.0]
    assert len(active) >= 2
    source = tmp_path / "sprite.png"
    source.write_bytes((images / "sprite2.png").read_bytes())
    original_hash = sha(source)
    before = encode_means(cli, ckpt, source, tmp_path / "before.npz")
    cleanest = np.inf
    for unit in active:
        edited = tmp_path / f"edited{unit}.png"
        result = cli("edit", source, "--ckpt", ckpt, "--unit", f"{unit}=+2", "--out", edited)
        assert result.exit_code == 0, result.output
        delta = encode_means(cli, ckpt, edited, tmp_path / "after.npz") - before
        others = np.delete(np.abs(delta), unit)
        print(f"unit {unit} (KL {kl[unit]:.2f}) +2 -> re-encoded change {np.round(delta, 2)}")
        assert 1.0 < delta[unit] < 3.0
        assert others.max() < delta[unit]
        cleanest = min(cleanest, others.max() / delta[unit])
    assert cleanest < 0.3  # the best-disentangled unit leaves the others nearly still
    assert sha(source) == original_hash
    result = cli(
        "edit", source, "--ckpt", ckpt, "--unit", f"{active[0]}=+2", "--sweep", tmp_path / "sweep.gif"
    )
    assert result.exit_code == 0 and (tmp_path / "sprite.edited.png").exists()
    assert Image.open(tmp_path / "sweep.gif").n_frames == 2 * 12 - 2
    assert sha(source) == original_hash


def test_edit_by_name_and_where_the_checkpoint_comes_from(cli, ckpt, images, tmp_path, monkeypatch):
    named = tmp_path / "runs" / "mine" / "ckpt.pt"
    named.parent.mkdir(parents=True)
    named.write_bytes(ckpt.read_bytes())
    assert cli("units", named, "--name", "1=across").exit_code == 0
    monkeypatch.chdir(tmp_path)
    image = images / "sprite2.png"
    out = tmp_path / "e.png"
    result = cli("edit", image, "--across", "-1.5", "--out", out)
    assert result.exit_code == 0 and f"using checkpoint {Path('runs/mine/ckpt.pt')}" in result.stderr
    assert cli("edit", image, "--across=+0.5", "--unit", "d0=1", "--out", out).exit_code == 0
    monkeypatch.setenv("JVAE_CKPT", str(named))
    result = cli("edit", image, "--across", "=0", "--out", out)
    assert result.exit_code == 0 and "(from JVAE_CKPT)" in result.stderr
    result = cli("edit", image, "--azimuth", "+2", "--out", out)
    assert (
        result.exit_code == 2 and "unknown unit 'azimuth'" in result.stderr and "across (1)" in result.stderr
    )


def test_edit_refuses_what_it_must(cli, ckpt, images, tmp_path):
    image = tmp_path / "in.png"
    image.write_bytes((images / "sprite0.png").read_bytes())
    result = cli("edit", image, "--ckpt", ckpt, "--unit", "0=+1", "--out", image)
    assert result.exit_code == 1 and "refusing to overwrite the input image" in result.stderr
    result = cli("edit", image, "--ckpt", ckpt)
    assert result.exit_code == 2 and "nothing to edit" in result.stderr
    result = cli("edit", tmp_path / "missing.png", "--ckpt", ckpt, "--unit", "0=+1")
    assert result.exit_code == 1 and "image not found" in result.stderr
    result = cli("edit", image, "--ckpt", ckpt, "--unit", "0=up")
    assert result.exit_code == 2 and "is not +d, -d, =v or a number" in result.stderr
    result = cli("edit", image, "--ckpt", ckpt, "--unit", "d0=+1")
    assert result.exit_code == 2 and "d0 takes a category" in result.stderr


def test_traverse_one_unit_from_several_samples_puts_them_in_rows(cli, ckpt, tmp_path):
    out = tmp_path / "rows.gif"
    assert cli("traverse", ckpt, "--unit", "1", "--samples", "3", "--out", out).exit_code == 0
    assert Image.open(out).size == (96 + 2 + 34, 2 + 3 * 34)


def test_inputs_are_never_overwritten_and_huge_images_are_refused(cli, ckpt, images, tmp_path):
    face = tmp_path / "face.png"
    face.write_bytes((images / "sprite0.png").read_bytes())
    before = sha(face)
    result = cli("traverse", ckpt, "--unit", "0", "--from", face, "--out", face)
    assert result.exit_code == 1 and "refusing to overwrite the input image" in result.stderr
    animated = tmp_path / "face.gif"
    Image.open(face).save(animated)
    gif_before = sha(animated)
    result = cli(
        "edit", animated, "--ckpt", ckpt, "--unit", "0=+1", "--sweep", animated, "--out", tmp_path / "o.png"
    )
    assert result.exit_code == 1 and "would overwrite the input" in result.stderr
    assert sha(animated) == gif_before
    assert sha(face) == before
    bomb = tmp_path / "bomb.png"
    Image.new("L", (1, 1)).save(bomb)
    data = bytearray(bomb.read_bytes())
    data[16:24] = (30000).to_bytes(4, "big") * 2  # the IHDR claims 30000 x 30000 pixels
    bomb.write_bytes(bytes(data))
    result = cli("edit", bomb, "--ckpt", ckpt, "--unit", "0=+1", "--out", tmp_path / "b.png")
    assert result.exit_code == 1 and "cannot read image" in result.stderr and "Traceback" not in result.stderr
