"""A model shared as a folder (`jvae export`) loads back with the outputs of its checkpoint, for every kind,
through safetensors only; hostile folders are one-line errors."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch

import jvae
from jvae.modeling.builder import build_model
from jvae.modeling.checkpoint import Checkpoint
from jvae.modeling.presets import load_preset
from jvae.use import shared

# One preset per model kind, covering 32x32 and 64x64, grey and RGB, convolutional and MLP networks.
KIND_PRESETS = {
    "jointvae-grey-32": ("mnist", []),
    "jointvae-rgb-64": ("celeba", ["model.continuous=8"]),
    "jointvae-chairs-three-variables": ("chairs", []),
    "beta-tcvae": ("dsprites-beta-tcvae", []),
    "beta-vae-rgb": ("shapes3d-beta-vae", []),
    "cc-beta-vae": ("dsprites-cc-beta-vae", []),
    "class-conditional": ("digits-class-conditional", []),
    "dip-vae-i": ("dsprites-dip-vae-i", []),
    "dip-vae-ii": ("dsprites-dip-vae-ii", []),
    "factor-vae": ("dsprites-factor-vae", []),
    "grouped-vae-mlp": ("dsprites-grouped-vae", []),
    "vae": ("dsprites-vae", []),
}


def _checkpoint(tmp_path: Path, preset_name: str, sets: list[str], seed: int = 0) -> Path:
    name, preset = load_preset(preset_name, sets)
    torch.manual_seed(seed)
    model = build_model(preset)
    with torch.no_grad():  # weights away from their initialisation, so that a mix-up would show
        for value in model.parameters():
            value.add_(torch.randn_like(value) * 0.05)
    checkpoint = Checkpoint.new(
        name, preset, {k: v.detach().clone() for k, v in model.state_dict().items()}, 7
    )
    checkpoint.unit_names = {"0": "width", "d0": "digit"} if preset.model.discrete else {"0": "width"}
    path = tmp_path / "ckpt.pt"
    checkpoint.save(path)
    return path


@pytest.mark.parametrize("case", list(KIND_PRESETS), ids=list(KIND_PRESETS))
def test_an_exported_folder_gives_the_checkpoints_outputs(tmp_path, case):
    preset_name, sets = KIND_PRESETS[case]
    ckpt = _checkpoint(tmp_path, preset_name, sets)
    done = shared.export(ckpt, tmp_path / "shared")
    names = sorted(path.name for path in done.files)
    assert names == ["README.md", "config.json", "model.safetensors", "preset.toml", "traversals.gif"]
    assert not list((tmp_path / "shared").glob("*.pt"))
    original, copy = jvae.load(ckpt, device="cpu"), jvae.load(tmp_path / "shared", device="cpu")
    preset = original.preset
    if preset.model.classes:  # a class-conditional model encodes and decodes one class at a time
        original.network.default_class = copy.network.default_class = 3
    images = torch.rand(3, preset.data.channels, preset.data.image_size, preset.data.image_size)
    a, b = original.encode(images), copy.encode(images)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.logvar, b.logvar)
    assert all(torch.equal(p, q) for p, q in zip(a.probs, b.probs))
    assert torch.equal(original.decode(a.mode), copy.decode(a.mode))
    assert copy.unit_names == original.unit_names and copy.preset == original.preset


def test_the_card_and_the_commands_read_a_run_folder_export(digits_run, tmp_path, cli):
    report = digits_run.parent / "with-report"
    shutil.copytree(digits_run, report)
    (report / "report").mkdir()
    (report / "report" / "report.json").write_text(json.dumps({"metrics": {"mig": {"score": 0.25}}}))
    result = cli("export", report, tmp_path / "out", "--license", "mit", "--repo-id", "me/digits")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out"
    assert {p.name for p in folder.iterdir()} == {
        "README.md",
        "config.json",
        "model.safetensors",
        "preset.toml",
        "report.json",
        "traversals.gif",
    }
    card = (folder / "README.md").read_text()
    front = card.split("---")[1]
    assert "library_name: jvae" in front and "license: mit" in front and "- digits" in front
    assert "![Latent traversals](traversals.gif)" in card
    assert "| d0 | discrete (10-way) |" in card and "| mig.score | 0.2500 |" in card
    assert "jvae traverse hf:me/digits" in card
    assert "jvae train --preset digits --set train.steps=4" in card
    for command in (["units", folder], ["traverse", folder, "--unit", "0", "--out", tmp_path / "t.gif"]):
        ran = cli(*command)
        assert ran.exit_code == 0, ran.output
    assert (tmp_path / "t.gif").stat().st_size > 0
    again = cli("export", report, tmp_path / "out")  # never over a folder that holds something
    assert again.exit_code != 0 and "not an empty folder" in again.output
    with_state = cli("export", digits_run, tmp_path / "state", "--with-optimizer")
    assert with_state.exit_code == 0 and (tmp_path / "state" / "optimizer.safetensors").is_file()


def _one_line(result) -> str:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0]


def _header(path: Path) -> dict:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + length])


def _with_header(path: Path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def test_hostile_shared_folders_are_refused_in_one_line(tmp_path, cli):
    ckpt = _checkpoint(tmp_path, "digits", [])
    good = tmp_path / "good"
    shared.export(ckpt, good)
    data = (good / "model.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    body = data[8 + length :]

    def variant(name: str) -> Path:
        """A copy of the good folder whose config no longer pins the weights' hash."""
        folder = tmp_path / name
        shutil.copytree(good, folder)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "weights_sha256": None}))
        return folder

    only_pickle = tmp_path / "pickle"
    only_pickle.mkdir()
    shutil.copy(ckpt, only_pickle / "pytorch_model.bin")
    assert "never a pickle" in _one_line(cli("units", only_pickle))

    huge = variant("huge")
    (huge / "model.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    assert "header declares" in _one_line(cli("units", huge))

    renamed = variant("renamed")
    header = _header(good / "model.safetensors")
    first = next(key for key in header if key != "__metadata__")
    header["../../etc/\x1b[31mevil"] = header.pop(first)
    _with_header(renamed / "model.safetensors", header, body)
    line = _one_line(cli("units", renamed))
    assert "do not fit the preset's model" in line and "\x1b" not in line

    swapped = tmp_path / "swapped"
    shutil.copytree(good, swapped)
    (swapped / "model.safetensors").write_bytes(data[:-4] + b"\0\0\0\0")
    assert "sha256 differs" in _one_line(cli("units", swapped))

    newer = variant("newer")
    config = json.loads((newer / "config.json").read_text())
    config.update(format_version=99, jvae_version="9.0.0")
    (newer / "config.json").write_text(json.dumps(config))
    assert "upgrade jvae" in _one_line(cli("units", newer))

    named = variant("named")
    config = json.loads((named / "config.json").read_text())
    config["unit_names"] = {"0": "x" * 10000}
    (named / "config.json").write_text(json.dumps(config))
    assert "unit names" in _one_line(cli("units", named))

    bloated = variant("bloated")
    (bloated / "config.json").write_text(json.dumps({"pad": "x" * (5 << 20)}))
    assert "config.json" in _one_line(cli("units", bloated))
    assert jvae.load(good, device="cpu").preset.data.dataset == "digits"  # the good one still loads
