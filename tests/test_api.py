"""`import jvae`: the short Python API does what the commands do, the tutorial's code runs as printed, and
the 0.1 import name still works for one release."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

import jvae
from jvae.base.errors import JvaeError, UsageError
from jvae.base.media import write_png
from jvae.data import open_dataset

REPO = Path(__file__).resolve().parent.parent


def test_the_tutorials_code_runs_as_printed(tmp_path):
    page = (REPO / "docs" / "tutorials" / "python.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs" / "tutorial" / "ckpt.pt").is_file()
    assert "UnitInfo(address='0'" in done.stdout and "'cluster_accuracy': {'d0': 0." in done.stdout


def test_a_loaded_model_encodes_decodes_traverses_and_edits_like_the_engine(sprites_ckpt, tmp_path):
    by_folder, by_file = jvae.load(sprites_ckpt.parent, device="cpu"), jvae.load(sprites_ckpt, device="cpu")
    assert by_folder.preset == by_file.preset and by_folder.path == by_file.path == sprites_ckpt
    source = open_dataset(by_file.preset.data)
    images = source.images(torch.arange(4), torch.device("cpu"))
    path = tmp_path / "sprite.png"
    write_png((images[0, 0].numpy() * 255).round().astype("uint8"), path)

    code = by_file.encode(images)
    assert code.mean.shape == (4, 4) and [p.shape for p in code.probs] == [(4, 4)]
    quantised = (images[:1] * 255).round() / 255  # what the 8-bit PNG holds
    torch.testing.assert_close(by_file.encode(path).mean, by_file.encode(quantised).mean, atol=1e-6, rtol=0)
    with Image.open(path) as picture:  # a PIL image is read as its file is: the same crop, resize and scale
        torch.testing.assert_close(by_file.encode(picture).mean, by_file.encode(path).mean, atol=0, rtol=0)
    with torch.no_grad():
        expected = by_file.network.encode(images)
    torch.testing.assert_close(code.mean, expected.mean)
    torch.testing.assert_close(by_file.reconstruct(images), by_file.decode(code.mode))

    frames = by_file.traverse("d0", image=images[0])
    assert frames.shape == (10, 1, 32, 32) and 0.0 <= frames.min() and frames.max() <= 1.0
    assert not torch.allclose(frames[0], frames[-1])  # the category changes the picture
    edited = by_file.edit(images[0], d0=2)
    torch.testing.assert_close(edited, frames[5:6])  # category 2 is the traversal's sixth frame of ten
    assert [u.address for u in by_file.units()] == ["0", "1", "2", "3", "d0"]
    assert all(u.kl is not None for u in by_file.units())
    assert by_file.sample(3, category=1).shape == (3, 1, 32, 32)


def test_the_api_refuses_in_one_line(sprites_ckpt, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(JvaeError, match="not a run folder"):
        jvae.load(tmp_path / "empty")
    model = jvae.load(sprites_ckpt, device="cpu")
    with pytest.raises(JvaeError, match="unknown unit 'azimuth'"):
        model.traverse("azimuth")
    with pytest.raises(UsageError, match="mig_typo: not a metric"):
        jvae.evaluate(model, ["mig_typo"])


def test_the_commands_take_a_run_folder_where_they_take_a_checkpoint(sprites_ckpt, tmp_path, cli):
    done = cli("traverse", sprites_ckpt.parent, "--unit", "d0", "--out", tmp_path / "d0.gif")
    assert done.exit_code == 0, done.output
    assert (tmp_path / "d0.gif").stat().st_size > 0


def test_presets_lists_every_shipped_preset_with_its_description():
    listed = jvae.presets()
    assert {"quickstart", "mnist", "digits"} <= set(listed)
    assert all(text for text in listed.values())
    assert jvae.preset("digits", set={"train.steps": 7}).train.steps == 7


def test_the_old_import_name_warns_and_gives_the_moved_module():
    for name in [m for m in sys.modules if m == "jvae_cli" or m.startswith("jvae_cli.")]:
        del sys.modules[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import jvae_cli.trainer  # noqa: F401
    from jvae.training import trainer

    assert sys.modules["jvae_cli.trainer"] is trainer
    assert any(issubclass(w.category, DeprecationWarning) and "import jvae" in str(w.message) for w in caught)
    import jvae_cli.data.registry

    from jvae.data import registry

    assert jvae_cli.data.registry is registry
