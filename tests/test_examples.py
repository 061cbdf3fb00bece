"""Every example states what it reproduces, and its --quick variant runs and writes well-formed outputs.

The --quick runs train real models (half a minute to several minutes each): they are left out of the default
suite and run with `pytest -m slow_example`; the default suite checks every example's header.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(
    p for p in (REPO / "examples").glob("*.*") if p.suffix in {".sh", ".py"} and not p.stem.startswith("_")
)


def _header(path: Path) -> str:
    text = path.read_text()
    if path.suffix == ".py":
        return text.split('"""')[1]
    return "\n".join(line for line in text.splitlines()[1:] if line.startswith("#"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_says_what_it_reproduces_how_long_and_where(path):
    header = _header(path)
    assert "--quick" in header and "Runtime" in header and "Outputs" in header, path.name
    assert f"examples/{path.name}" in header  # the command that runs it


def _run(path: Path, out: Path, *args: str) -> str:
    env = {**os.environ, "OUT": str(out), "JVAE": f"{sys.executable} -m jvae", "MPLBACKEND": "Agg"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = ["bash", str(path)] if path.suffix == ".sh" else [sys.executable, str(path)]
    done = subprocess.run([*command, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def _image(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()
        return image.size


def _rows(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("|") and "---" not in line]


@pytest.mark.slow_example
def test_python_api_example(tmp_path):
    _run(REPO / "examples" / "python_api.py", tmp_path, "--quick")
    codes = np.load(tmp_path / "codes.npz")
    assert codes["mean"].shape == (3, 6) and len(codes["path"]) == 3
    assert sorted(p.name for p in (tmp_path / "edited").iterdir()) == [
        "sprite0.png",
        "sprite1.png",
        "sprite2.png",
    ]
    assert _image(tmp_path / "edited" / "sprite0.png") == (32, 32)


@pytest.mark.slow_example
def test_mnist_jointvae_example(tmp_path):
    _run(REPO / "examples" / "mnist_jointvae.sh", tmp_path, "--quick")
    width, height = _image(tmp_path / "per_digit.png")
    assert height > width  # ten rows of categories, eight columns
    _image(tmp_path / "traversals.png")
    metrics = json.loads((tmp_path / "report" / "report.json").read_text())["metrics"]
    assert 0 <= metrics["cluster_accuracy"]["d0"] <= 1 and 0 <= metrics["linear_probe"] <= 1


@pytest.mark.slow_example
def test_factor_correlation_example(tmp_path):
    stdout = _run(REPO / "examples" / "factor_correlation.py", tmp_path, "--quick")
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["factor"] == "posX" and -1 <= result["pearson"] <= 1
    assert len(json.loads((tmp_path / "correlation.json").read_text())["abs_pearson_per_unit"]) == 6
    _image(tmp_path / "scatter.png")


@pytest.mark.slow_example
def test_edit_named_units_example(tmp_path):
    _run(REPO / "examples" / "edit_named_units.sh", tmp_path, "--quick")
    assert _image(tmp_path / "input.edited.png") == (32, 32)
    with Image.open(tmp_path / "sweep.gif") as gif:
        assert gif.n_frames >= 12  # 12 steps from the original code to the edit, then back


@pytest.mark.slow_example
def test_baselines_traversals_example(tmp_path):
    _run(REPO / "examples" / "baselines_traversals.sh", tmp_path, "--quick")
    for model in ("jointvae", "beta-vae", "cc-beta-vae"):
        _image(tmp_path / f"{model}.png")


@pytest.mark.slow_example
def test_factorvae_metric_example(tmp_path):
    _run(REPO / "examples" / "factorvae_metric_dsprites.py", tmp_path, "--quick")
    assert len(_rows(tmp_path / "summary.md")) >= 1 + 6  # a header and six runs, then the summary


@pytest.mark.slow_example
def test_class_conditional_table1_example(tmp_path):
    _run(REPO / "examples" / "class_conditional_table1.py", tmp_path, "--quick")
    rows = _rows(tmp_path / "table1.md")
    assert any(r.startswith("| with L_class |") for r in rows) and any("without L_class" in r for r in rows)


@pytest.mark.slow_example
def test_grouped_vae_table1_example(tmp_path):
    _run(REPO / "examples" / "grouped_vae_table1.py", tmp_path, "--quick")
    assert any(r.startswith("| Grouped-VAE |") for r in _rows(tmp_path / "table1.md"))


@pytest.mark.slow_example
def test_mpi3d_example(tmp_path):
    _run(REPO / "examples" / "mpi3d_jointvae.sh", tmp_path, "--quick")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert {"factorvae", "mig", "elbo"} <= set(report["metrics"])


@pytest.mark.slow_example
def test_gallery_example(tmp_path):
    _run(REPO / "examples" / "gallery.py", tmp_path, "--quick")
    assert len(_rows(tmp_path / "quickstart_metrics.md")) == 8


@pytest.mark.slow_example
def test_quickstart_seeds_example(tmp_path):
    small = ["data.image_size=32", 'model.architecture="conv32"', "train.steps=200", "train.log_every=50"]
    _run(
        REPO / "examples" / "quickstart_seeds.py",
        tmp_path,
        "--quick",
        *[a for s in small for a in ("--set", s)],
    )
    rows = _rows(tmp_path / "seeds.md")
    assert [row.split("|")[1].strip() for row in rows] == ["seed", "0", "1", "median", "spread"]
    seeds = json.loads((tmp_path / "seeds.json").read_text())["seeds"]
    assert [s["seed"] for s in seeds] == [0, 1]
    for s in seeds:
        assert s["train_seconds"] > 0 and 0 <= s["MIG"] <= 1 and 0 <= s["FactorVAE score"] <= 1
        assert 0 <= s["units_above_1_nat"] <= 7
    assert (tmp_path / "seed1" / "report" / "report.json").is_file()
