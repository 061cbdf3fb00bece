"""Presets: the shipped files, validation, overrides, and the `jvae presets` commands."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import torch

import jvae
from jvae.kinds import build_critic
from jvae.modeling.builder import build_model
from jvae.modeling.presets import Preset, load_preset, preset_names, presets_dir
from jvae.training.steps import Objective, critic_step, vae_step

REPO = Path(__file__).resolve().parent.parent
PRESET_FILES = sorted((REPO / "presets").glob("*.toml"))

PAPER = {  # Dupont 2018 appendix C: continuous, discrete, lr, gamma, C_z stop/steps, C_c stop/steps, epochs, size
    "mnist": (10, [10], 5e-4, 30, 5, 25000, 5, 25000, 100, 32, 1),
    "fashion-mnist": (10, [10], 5e-4, 100, 5, 50000, 10, 50000, 100, 32, 1),
    "chairs": (32, [2, 2, 2], 1e-4, 300, 30, 100000, 5, 100000, 100, 64, 1),
    "celeba": (32, [10], 5e-4, 100, 50, 100000, 10, 100000, 100, 64, 3),
    "dsprites": (6, [3], 5e-4, 150, 40, 300000, 1.1, 300000, 30, 64, 1),
}


def test_the_installed_package_ships_every_preset_file():
    package = Path(jvae.__file__).resolve().parent
    if package != REPO / "jvae":  # a regular (non-editable) install must carry its own copy
        assert presets_dir() == package / "_presets"
    assert preset_names() == sorted(p.stem for p in PRESET_FILES)
    assert {"mnist", "fashion-mnist", "chairs", "celeba", "dsprites", "quickstart"} <= set(preset_names())
    assert all((presets_dir() / p.name).read_text() == p.read_text() for p in PRESET_FILES)


@pytest.mark.parametrize("path", PRESET_FILES, ids=lambda p: p.stem)
def test_every_preset_validates_builds_and_takes_a_training_step(path):
    name, preset = load_preset(str(path))
    assert name == path.stem
    torch.manual_seed(0)
    model = build_model(preset)
    optimizer = torch.optim.Adam(model.parameters(), lr=preset.train.lr)
    size, channels = preset.data.image_size, preset.data.channels
    x = torch.rand(4, channels, size, size).round()
    before = [p.detach().clone() for p in model.parameters()]
    critic = build_critic(preset.loss, preset.model, "cpu")
    labels = torch.tensor([0, 1, 1, 0]) if preset.model.classes else None
    noise = torch.Generator().manual_seed(0)
    terms, latent = vae_step(Objective(model, preset, 1000, critic), optimizer, x, labels, 1, noise)
    if critic is not None:
        assert torch.isfinite(critic_step(model, critic, preset, latent, labels, noise, x.flip(0)))
    assert torch.isfinite(terms.loss)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_every_preset_trains_in_one_precision_whatever_the_cpu():
    """`auto` would follow the hardware (bf16 where it is fast), so a preset and seed would train differently
    on different machines; a preset that names nothing trains in float32."""
    precisions = {path.stem: load_preset(str(path))[1].train.precision for path in PRESET_FILES}
    assert set(precisions.values()) <= {"fp32", "bf16"}, precisions
    assert "precision" not in (REPO / "presets" / "quickstart.toml").read_text()
    assert precisions["quickstart"] == "fp32"


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_presets_hold_the_papers_values(name):
    cont, disc, lr, gamma, cz, cz_steps, cc, cc_steps, epochs, size, channels = PAPER[name]
    preset = load_preset(name)[1]
    assert (preset.model.continuous, preset.model.discrete, preset.train.lr) == (cont, disc, lr)
    assert (preset.data.image_size, preset.data.channels, preset.train.batch_size) == (size, channels, 64)
    assert preset.model.architecture == f"conv{size}" and preset.model.temperature == 0.67
    for schedule, stop, steps in (
        (preset.loss.continuous_capacity, cz, cz_steps),
        (preset.loss.discrete_capacity, cc, cc_steps),
    ):
        assert (schedule.start, schedule.stop, schedule.steps, schedule.gamma) == (0.0, stop, steps, gamma)
    assert preset.train.epochs == epochs and preset.train.steps is None


def test_quickstart_is_the_dsprites_model_on_generated_data():
    quick, paper = load_preset("quickstart")[1], load_preset("dsprites")[1]
    # The same network; the paper preset draws it as PyTorch 0.4.1 did (the 2018 recipe), while the
    # quickstart keeps the initialisation its short schedule was tuned and measured with.
    assert quick.model.model_dump(exclude={"init"}) == paper.model.model_dump(exclude={"init"})
    assert (quick.model.init, paper.model.init) == ("current", "pytorch-0.4")
    assert quick.train.batch_size == 64
    assert quick.data.source == "generated" and quick.data.dataset == "dsprites"
    assert quick.loss.continuous_capacity.steps < paper.loss.continuous_capacity.steps


def test_presets_lists_every_preset_on_one_line_of_an_80_column_terminal(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("presets")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    for name in preset_names():
        (row,) = [line for line in lines if line.split()[0] == name]  # whole, never cut or folded
        preset = load_preset(name)[1]
        assert preset.loss.kind in row
        assert preset.summary and preset.summary[:10] in row
    chairs = next(line for line in lines if line.startswith("chairs "))
    assert "32c+3x2d" in chairs  # 32 continuous units and three 2-way variables
    assert "jvae presets show NAME" in lines[-1]
    monkeypatch.setenv("COLUMNS", "200")
    assert "\u2026" not in cli("presets").stdout  # with room, no summary is cut


def test_pretrained_list_fits_80_columns(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("pretrained")
    assert result.exit_code == 0
    rows = [line for line in result.stdout.splitlines() if line.startswith("official:")]
    assert len(rows) == 5 and all(len(line) <= 80 for line in result.stdout.splitlines())


def test_presets_show_json_is_exactly_the_schema(cli):
    result = cli("presets", "show", "chairs", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert set(data) == set(Preset.model_fields)
    assert Preset.model_validate(data) == load_preset("chairs")[1]
    assert data["model"]["discrete"] == [2, 2, 2]


def test_presets_show_applies_overrides_and_prints_toml(cli):
    result = cli(
        "presets",
        "show",
        "mnist",
        "--set",
        "loss.continuous_capacity.stop=7.5",
        "--set",
        "model.discrete=[4, 2]",
    )
    assert result.exit_code == 0
    data = tomllib.loads(result.stdout)
    assert data["loss"]["continuous_capacity"]["stop"] == 7.5 and data["model"]["discrete"] == [4, 2]


@pytest.mark.parametrize(
    "override,expected",
    [
        (
            "loss.continuous_capacity.gama=3",
            "loss.continuous_capacity.gama: unknown key; allowed here: start, stop, steps, gamma",
        ),
        (
            "model.architecture=resnet",
            re.compile(r"model\.architecture: .*'conv32'.*'conv64'.*'conv128'.*'mlp'.*\(got 'resnet'\)"),
        ),
        ("train.lr=-1", re.compile(r"train\.lr: .*\b0\b.*\(got -1\)")),
        ("model.discrete=[1]", "at least 2 categories"),
        ("data.image_size=48", re.compile(r"data\.image_size: .*\b32\b.*\b64\b.*\b128\b.*\(got 48\)")),
        ("data.image_size=32", "needs data.image_size = 64"),
        ("trian.lr=1", "trian: unknown key; allowed here: description, summary, data, model, loss, train"),
        ("novalue", "expected section.key=value"),
    ],
)
def test_bad_overrides_exit_2_with_the_field_path(cli, override, expected):
    result = cli("presets", "show", "dsprites", "--set", override)
    assert result.exit_code == 2
    # jvae's own messages word for word; pydantic's by the field, the allowed values and the value given
    if isinstance(expected, re.Pattern):
        assert expected.search(result.stderr), result.stderr
    else:
        assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_a_users_own_preset_file_works_where_a_name_does(cli, tmp_path):
    own = tmp_path / "mine.toml"
    own.write_text((presets_dir() / "mnist.toml").read_text().replace("continuous = 10", "continuous = 3"))
    result = cli("presets", "show", str(own), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["model"]["continuous"] == 3


@pytest.mark.parametrize(
    "content,expected",
    [
        ("description = 'x'\n[data]\ndataset = 'mnist'\n", "model: missing"),
        ("not toml ===", "not valid TOML"),
        (
            (Path(__file__).parent.parent / "presets" / "mnist.toml").read_text() + "\n[extra]\nx = 1\n",
            "extra: unknown key",
        ),
    ],
)
def test_bad_preset_files_exit_2(cli, tmp_path, content, expected):
    own = tmp_path / "bad.toml"
    own.write_text(content)
    result = cli("presets", "show", str(own))
    assert result.exit_code == 2 and expected in result.stderr


def test_unknown_preset_names_the_known_ones(cli):
    result = cli("presets", "show", "chiars")
    assert result.exit_code == 2
    assert "unknown preset 'chiars'" in result.stderr and "chairs" in result.stderr


def test_help_is_fast_because_it_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, jvae.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    result = subprocess.run([sys.executable, "-m", "jvae", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout and "presets" in result.stdout


def test_the_jvae_process_leaves_with_the_commands_status_and_all_its_output(tmp_path):
    """`jvae` skips the interpreter's teardown once a command has ended: the whole help (the last line of a
    pipe's buffer included) and an error's status and line must still come out."""
    import subprocess
    import sys

    def jvae(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "jvae", *args], capture_output=True, text=True)

    shown = jvae("--help")
    assert shown.returncode == 0 and shown.stderr == ""
    assert shown.stdout.rstrip().endswith("╯") and "import" in shown.stdout.rstrip().splitlines()[-2]
    unknown = jvae("train", "--preset", "no-such-preset", "--out", str(tmp_path / "run"))
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown preset 'no-such-preset'")
    assert not (tmp_path / "run").exists()
