"""Stacked training: K models of one preset as one computation, each equal to the model trained alone and
written to its own run folder as a single run writes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from jvae.modeling.presets import Preset, load_preset
from jvae.runs import runfolder, runplan
from jvae.training import trainer

# fp32 on the CPU, a checkpoint only at the end: what the comparison reads is the run itself.
EXACT = ["train.precision=fp32", "train.log_every=50", "train.checkpoint_every=100000", "train.batch_size=32"]


@pytest.fixture(autouse=True)
def two_threads(monkeypatch):
    """Stacks run with two threads (on the CPU: models side by side, one thread each), whatever else runs on
    the machine; `_alone` trains the runs they are compared with on one thread, as each stacked model
    computes (a oneDNN reduction splits its work by thread, so the thread count is part of the arithmetic)."""
    monkeypatch.setenv("JVAE_THREADS", "2")


def _alone(monkeypatch: pytest.MonkeyPatch, preset: Preset, run_dir: Path) -> None:
    with monkeypatch.context() as patch:
        patch.setenv("JVAE_THREADS", "1")
        trainer.train(preset, "digits", run_dir, device="cpu")


def _preset(*sets: str) -> Preset:
    return load_preset("digits", [*EXACT, *sets])[1]


def _saved(run_dir: Path) -> dict:
    return torch.load(run_dir / runfolder.CHECKPOINT, weights_only=True)


def _assert_same_run(stacked: Path, alone: Path) -> None:
    a, b = _saved(stacked), _saved(alone)
    assert a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for key in b["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-6, msg=key)
    saved_a, saved_b = a["optimizer"], b["optimizer"]
    assert saved_a["param_groups"] == saved_b["param_groups"]
    assert saved_a["state"].keys() == saved_b["state"].keys()
    for index, entry in saved_b["state"].items():
        for name, value in entry.items():
            torch.testing.assert_close(saved_a["state"][index][name], value, rtol=1e-5, atol=1e-6)
    assert torch.equal(a["rng"]["noise"], b["rng"]["noise"])  # the same draws were taken
    lines_a = (stacked / runfolder.METRICS).read_text().splitlines()
    lines_b = (alone / runfolder.METRICS).read_text().splitlines()
    assert len(lines_a) == len(lines_b)
    for line_a, line_b in zip(lines_a, lines_b):
        record_a, record_b = json.loads(line_a), json.loads(line_b)
        record_a.pop("images_per_sec"), record_b.pop("images_per_sec")
        assert record_a.keys() == record_b.keys()
        assert record_a["step"] == record_b["step"]
        assert record_a["loss"] == pytest.approx(record_b["loss"], rel=1e-5)
    assert (stacked / runfolder.TRAVERSAL).stat().st_size > 0
    assert (stacked / runfolder.PRESET_FILE).read_text() == (alone / runfolder.PRESET_FILE).read_text()


TWO = {
    "seed-3": ("train.steps=100", "train.seed=3"),
    # The second member also bounds I(x; c), adds the marginal term and the consistency term: the aggregate
    # posterior a stacked model's loss reads is its own batch's, and its jitter is drawn from its own noise.
    "seed-5": (
        "train.steps=100",
        "train.seed=5",
        "loss.continuous_capacity.gamma=10",
        'loss.discrete_measure="mutual-information"',
        "loss.marginal_weight=5.0",
        "loss.consistency_weight=5.0",
    ),
}


@pytest.fixture(scope="module")
def two_alone(tmp_path_factory) -> Path:
    """The runs the two-model stacks are compared with, trained once for every thread count of the stack."""
    folder = tmp_path_factory.mktemp("alone")
    for name, sets in TWO.items():
        _alone(pytest.MonkeyPatch(), _preset(*sets), folder / name)
    return folder


@pytest.mark.parametrize("threads", ["2", "1"])  # models side by side; one thread, shared optimiser step
def test_two_stacked_models_with_different_seeds_and_gammas_equal_each_trained_alone(
    tmp_path, monkeypatch, threads, two_alone
):
    monkeypatch.setenv("JVAE_THREADS", threads)
    members = [(name, _preset(*sets)) for name, sets in TWO.items()]
    results = trainer.train_stack(members, "digits", tmp_path / "stack", device="cpu")
    assert [r.run_dir.name for r in results] == ["seed-3", "seed-5"] and all(r.step == 100 for r in results)
    for name, _ in members:
        _assert_same_run(tmp_path / "stack" / name, two_alone / name)
    # The comparison can fail: a model trained with another seed is far from it.
    other, mine = _saved(two_alone / "seed-3"), _saved(two_alone / "seed-5")
    assert max((other["model"][k] - mine["model"][k]).abs().max().item() for k in mine["model"]) > 1e-2


# Slow: the two-model stacks above and test_resume.py's stack cases check the same equality and resume faster.
@pytest.mark.slow
def test_three_stacked_models_equal_each_trained_alone_and_resume_exactly(tmp_path, cli, monkeypatch):
    sets = ["--set", "train.precision=fp32", "--set", "train.batch_size=32", "--set", "train.log_every=20"]
    result = cli(
        "train",
        "--preset",
        "digits",
        "--seeds",
        "0-2",
        "--set",
        "train.steps=40",
        *sets,
        "--out",
        tmp_path / "s",
    )
    assert result.exit_code == 0, result.output
    assert "run folders in" in result.output and "seed-0, seed-1, seed-2" in result.output
    stack = tmp_path / "s"
    assert json.loads((stack / runfolder.STACK_FILE).read_text())["members"] == ["seed-0", "seed-1", "seed-2"]
    resumed = cli("train", "--resume", stack, "--set", "train.steps=60")
    assert resumed.exit_code == 0, resumed.output
    for seed in range(3):
        name = f"seed-{seed}"
        alone = tmp_path / name
        preset = load_preset(
            "digits",
            [
                "train.precision=fp32",
                "train.batch_size=32",
                "train.log_every=20",
                "train.steps=60",
                f"train.seed={seed}",
            ],
        )[1]
        _alone(monkeypatch, preset, alone)
        _assert_same_run(stack / name, alone)


def test_a_stacked_models_folder_works_with_every_command_and_resumes_alone(tmp_path, cli):
    stack = tmp_path / "s"
    small = ["--set", "train.steps=30", "--set", "train.log_every=10", "--set", "train.batch_size=32"]
    assert cli("train", "--preset", "digits", "--seeds", "4,9", *small, "--out", stack).exit_code == 0
    ckpt = stack / "seed-9" / runfolder.CHECKPOINT
    assert _saved(stack / "seed-9")["preset"]["train"]["seed"] == 9
    commands = [
        ("units", ckpt),
        ("traverse", ckpt, "--unit", "0", "--out", tmp_path / "t.gif"),
        ("sample", ckpt, "--n", "4", "--out", tmp_path / "s.png"),
        ("encode", ckpt, "digits", "--out", tmp_path / "codes.npz", "--limit", "64"),
        ("evaluate", ckpt, "--fast", "--out", tmp_path / "report"),
    ]
    for args in commands:
        result = cli(*args)
        assert result.exit_code == 0, (args, result.output)
    assert (tmp_path / "t.gif").stat().st_size > 0 and any((tmp_path / "report").iterdir())
    alone = cli("train", "--resume", stack / "seed-9", "--set", "train.steps=40")
    assert alone.exit_code == 0, alone.output
    assert _saved(stack / "seed-9")["step"] == 40 and _saved(stack / "seed-4")["step"] == 30
    # The stack's runs now stand at different steps: resuming the stack says so and changes nothing.
    refused = cli("train", "--resume", stack, "--set", "train.steps=50")
    assert refused.exit_code != 0 and "different steps" in refused.output
    assert _saved(stack / "seed-4")["step"] == 30


def test_kinds_with_a_critic_and_mismatched_presets_refuse_to_stack(tmp_path, cli):
    result = cli("train", "--preset", "dsprites-factor-vae", "--seeds", "0-1", "--out", tmp_path / "f")
    assert result.exit_code != 0
    assert "cannot be stacked" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "f").exists()
    with pytest.raises(Exception, match="may differ only in train.seed"):
        trainer.train_stack(
            [("a", _preset("train.seed=0")), ("b", _preset("train.seed=1", "train.lr=0.01"))],
            "digits",
            tmp_path / "m",
        )
    assert not (tmp_path / "m").exists()
    both = cli("train", "--preset", "digits", "--seeds", "0-1", "--nproc", "2", "--out", tmp_path / "n")
    assert both.exit_code == 2 and "one process" in both.output
    listing = tmp_path / "members.json"
    listing.write_text(
        '[{"folder": "../escape", "seed": 0, "sets": []}, {"folder": "b", "seed": 1, "sets": []}]'
    )
    escaping = cli("train", "--preset", "digits", "--members", listing, "--out", tmp_path / "m2")
    assert escaping.exit_code == 2 and "plain folder names" in escaping.output
    listing.write_text("{not json")
    broken = cli("train", "--preset", "digits", "--members", listing, "--out", tmp_path / "m2")
    assert broken.exit_code == 2 and "not a list" in broken.output
    assert not (tmp_path / "m2").exists() and not (tmp_path / "escape").exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    busy = cli("train", "--preset", "digits", "--seeds", "0-1", "--out", taken)
    assert busy.exit_code != 0 and "not an empty folder" in busy.output
    assert (taken / "notes.txt").read_text() == "mine"
    # Named folders may go into a folder holding other things, beside them.
    short = ["--set", "train.steps=4", "--set", "train.log_every=2", "--set", "train.batch_size=32"]
    named = cli("train", "--preset", "digits", "--seeds", "0-1", "--folders", "a,b", *short, "--out", taken)
    assert named.exit_code == 0, named.output
    assert (taken / "notes.txt").read_text() == "mine" and _saved(taken / "b")["preset"]["train"]["seed"] == 1
    assert json.loads((taken / "stack-a.json").read_text())["members"] == ["a", "b"]


@pytest.mark.parametrize("preset_name", ["digits", "dsprites-grouped-vae", "dsprites-beta-tcvae"])
def test_grouped_convolutions_compute_the_same_step_as_each_models_own_kernels(preset_name):
    """The GPU's layout (grouped convolutions, batched products), run here on the CPU, against the CPU's."""
    from jvae.data import open_dataset
    from jvae.training.stacking import StackedStepper

    sets = ["train.precision=fp32", "train.batch_size=16", 'data.source="generated"']
    sets = sets if "dsprites" in preset_name else sets[:2]
    name, preset = load_preset(preset_name, sets)
    body = preset.model_dump(mode="json")
    presets = [
        Preset.model_validate({**body, "train": {**body["train"], "seed": seed}}) for seed in (0, 1, 2)
    ]
    source = open_dataset(preset.data, None)
    runs = [
        StackedStepper(presets, source, torch.device("cpu"), grouped=grouped) for grouped in (False, True)
    ]
    losses = [[terms.loss.item() for terms, _ in run.step_members(0)] for run in runs]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for name in runs[0].network.names:
        own, grouped = (run.network.weight(name).grad for run in runs)
        assert own is not None and grouped is not None
        assert ((own - grouped).norm() / own.norm()).item() < 1e-4, name


def test_a_members_stack_resumes_from_its_folder_or_its_stack_file(tmp_path, cli):
    listing = tmp_path / "members.json"
    listing.write_text(
        '[{"folder": "plain", "seed": 0, "sets": []},'
        ' {"folder": "marginal", "seed": 0, "sets": ["loss.marginal_weight=2.0"]}]'
    )
    study = tmp_path / "study"
    steps = ["--set", "train.steps=6", "--set", "train.log_every=3"]
    first = cli("train", "--preset", "digits", "--members", listing, "--out", study, *steps)
    assert first.exit_code == 0, first.output
    assert (study / "stack-plain.json").is_file() and not (study / "stack.json").exists()
    by_folder = cli("train", "--resume", study, "--set", "train.steps=9")
    assert by_folder.exit_code == 0, by_folder.output
    assert _saved(study / "plain")["step"] == 9 and _saved(study / "marginal")["step"] == 9
    (study / "stack-other.json").write_text((study / "stack-plain.json").read_text())
    ambiguous = cli("train", "--resume", study, "--set", "train.steps=15")
    assert ambiguous.exit_code != 0 and "several stacks" in ambiguous.output
    assert "stack-other.json" in ambiguous.output and "Traceback" not in ambiguous.output
    assert _saved(study / "plain")["step"] == 9
    plan = runplan.resumed(study / "stack-plain.json", [])  # naming the stack file picks one
    assert [run.run_dir for run in plan.runs] == [study / "plain", study / "marginal"] and plan.resume
