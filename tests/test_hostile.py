"""jvae used as a hostile or careless user would: planted links, two runs on one folder, a full disk, NaN,
decompression bombs, escape sequences, numbers at the edges, forged checkpoints. Each must end in one line on
stderr with the documented exit code, and nothing outside the folder the user named may change."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import stat
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from jvae_cli import trainer
from jvae_cli.checkpoint import read_checkpoint
from jvae_cli.presets import load_preset

TINY = ["train.steps=4", "train.log_every=2", "train.checkpoint_every=2"]


def _one_line(result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    return lines[0]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished 4-step digits run: checkpoint, metrics, preset and traversal."""
    folder = tmp_path_factory.mktemp("hostile") / "run"
    name, preset = load_preset("digits", TINY)
    trainer.train(preset, name, folder)
    return folder


@pytest.fixture
def outside(tmp_path) -> Path:
    """A file of the user's that no jvae command was asked to touch."""
    victim = tmp_path / "elsewhere" / "precious.txt"
    victim.parent.mkdir()
    victim.write_text("mine")
    return victim


def _copy_run(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    copy.mkdir()
    for item in run.iterdir():
        if item.is_file():
            (copy / item.name).write_bytes(item.read_bytes())
    return copy


# ----------------------------------------------------------------------------------------------- 1. links


@pytest.mark.parametrize("planted", ["preset.toml", "metrics.jsonl", "ckpt.pt"])
def test_resume_never_writes_through_a_link_planted_in_the_run(cli, run, tmp_path, outside, planted):
    copy = _copy_run(run, tmp_path)
    if planted == "ckpt.pt":  # the checkpoint itself must stay readable: link the one it writes next
        target = copy / planted
        target.rename(copy / "real.pt")
        target.symlink_to(copy / "real.pt")
        (copy / "real.pt").chmod(0o644)
    else:
        (copy / planted).unlink()
        (copy / planted).symlink_to(outside)
    line = _one_line(cli("train", "--resume", copy, "--set", "train.steps=6"), 1)
    assert "symbolic link" in line
    assert outside.read_text() == "mine"


def test_outputs_are_never_written_through_a_link(cli, run, tmp_path, outside):
    link = tmp_path / "samples.png"
    link.symlink_to(outside)
    line = _one_line(cli("sample", run / "ckpt.pt", "--out", link), 1)
    assert "symbolic link" in line and outside.read_text() == "mine"
    gif = tmp_path / "t.gif"
    gif.symlink_to(outside)
    _one_line(cli("traverse", run / "ckpt.pt", "--unit", "0", "--out", gif), 1)
    assert outside.read_text() == "mine"


def test_evaluate_figures_are_never_written_through_a_link(cli, run, tmp_path, outside):
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.json").symlink_to(outside)
    result = cli("evaluate", run / "ckpt.pt", "--metrics", "elbo", "--out", report)
    assert "symbolic link" in _one_line(result, 1) and outside.read_text() == "mine"


# ----------------------------------------------------------------------------------------------- 2. lock


def test_a_run_folder_in_use_is_refused_naming_the_process(cli, run, tmp_path):
    folder = tmp_path / "busy"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from jvae_cli.runlock import RunLock; RunLock(sys.argv[1]).__enter__(); "
            "print('held', flush=True); time.sleep(120)",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        line = _one_line(cli("train", "--preset", "digits", "--set", "train.steps=2", "--out", folder), 1)
        assert f"in use by jvae process {holder.pid}" in line
        assert not (folder / "ckpt.pt").exists() and not (folder / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    result = cli(
        "train", "--preset", "digits", "--set", "train.steps=2", "--out", folder
    )  # released on death
    assert result.exit_code == 0, result.stderr


# ----------------------------------------------------------------------------------------------- 3. full disk


def _limited(args: list[str], limit: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run jvae with files limited to `limit` bytes: writes past it fail as on a full disk."""

    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    command = [sys.executable, "-m", "jvae_cli", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, preexec_fn=cap, timeout=300)


@pytest.mark.parametrize(
    "args",
    [
        ["traverse", "CKPT", "--all", "--frames", "40", "--scale", "4", "--out", "OUT/t.gif"],
        ["sample", "CKPT", "--n", "64", "--scale", "4", "--out", "OUT/s.png"],
        ["train", "--preset", "digits", "--set", "train.steps=2", "--out", "OUT/run"],
    ],
)
def test_a_full_disk_is_one_line_and_leaves_no_partial_file(run, tmp_path, args):
    out = tmp_path / "out"
    out.mkdir()
    args = [str(run / "ckpt.pt") if a == "CKPT" else a.replace("OUT", str(out)) for a in args]
    done = _limited(args, 20_000, tmp_path)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "cannot write" in lines[-1], done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    leftovers = [p.name for p in out.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


# ----------------------------------------------------------------------------------------------- 4. NaN


def test_a_diverging_run_never_saves_nan_weights_as_good(tmp_path):
    name, preset = load_preset(
        "digits", ["train.steps=40", "train.checkpoint_every=1", "train.log_every=20", "train.lr=1e9"]
    )
    with pytest.raises(Exception, match="diverged at step") as diverged:
        trainer.train(preset, name, tmp_path / "run")
    message = str(diverged.value)
    if (tmp_path / "run" / "ckpt.pt").exists():
        saved = read_checkpoint(tmp_path / "run" / "ckpt.pt")
        assert all(torch.isfinite(v).all() for v in saved.model.values())
        assert f"(step {saved.step})" in message
        first = int(message.split("diverged at step ")[1].split()[0])
        assert saved.step < first
    else:
        assert "no checkpoint was written" in message


# ----------------------------------------------------------------------------------------------- 5. bombs


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header promises a 16-bit width x height image; its data is a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    body = zlib.compress(b"\0" * 1000)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_refused_before_decoding(cli, run, tmp_path):
    bomb = tmp_path / "bomb.png"
    _png_header(bomb, 13000, 13000)
    result = cli("encode", run / "ckpt.pt", bomb, "--out", tmp_path / "codes.csv")
    line = _one_line(result, 1)
    assert "13000x13000" in line and "megapixels" in line
    assert "DecompressionBomb" not in result.stderr
    assert not (tmp_path / "codes.csv").exists()


# ----------------------------------------------------------------------------------------------- 6. text


def test_names_and_paths_from_files_reach_the_terminal_inert(cli, run, tmp_path):
    folder = tmp_path / "[" / "b]"  # the path reads .../[/b]/ckpt.pt: a closing tag opened nowhere
    folder.mkdir(parents=True)
    payload = torch.load(run / "ckpt.pt", weights_only=True)
    payload["unit_names"] = {"0": "\x1b]0;pwned\x07[/b]\x1b[2J"}
    torch.save(payload, folder / "ckpt.pt")
    result = cli("units", folder / "ckpt.pt")
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b]0;pwned\\x07[/b]" in result.stdout and "[/b]" in result.stdout


# ----------------------------------------------------------------------------------------------- 7. edge numbers


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "CKPT", "--seed", "99999999999999999999999", "--out", "OUT/s.png"],
        ["evaluate", "CKPT", "--seed", "4294967295", "--out", "OUT/r"],
        ["edit", "IMAGE", "--ckpt", "CKPT", "--unit", "0=1e308", "--out", "OUT/e.png"],
        ["traverse", "CKPT", "--unit", "0", "--range", "-1e300", "1e300", "--out", "OUT/t.gif"],
        ["traverse", "CKPT", "--unit", "0", "--range", "nan", "1", "--out", "OUT/t.gif"],
        [
            "traverse",
            "CKPT",
            "--all",
            "--samples",
            "256",
            "--frames",
            "500",
            "--scale",
            "16",
            "--out",
            "OUT/t.gif",
        ],
        ["bench", "--preset", "digits", "--batch-size", "5000", "--steps", "1", "--repeats", "1"],
        ["train", "--preset", "digits", "--set", "train.lr=inf", "--out", "OUT/r"],
        ["train", "--preset", "digits", "--set", "train.steps=true", "--out", "OUT/r"],
        ["train", "--preset", "digits", "--set", "train.seed=99999999999", "--out", "OUT/r"],
        ["sample", "CKPT", "--device", "tpu", "--out", "OUT/s.png"],
    ],
)
def test_numbers_at_the_edges_are_usage_errors(cli, run, tmp_path, args):
    image = tmp_path / "face.png"
    _png_header(image, 8, 8)
    rendered = [str(run / "ckpt.pt") if a == "CKPT" else str(image) if a == "IMAGE" else a for a in args]
    rendered = [a.replace("OUT", str(tmp_path)) for a in rendered]
    result = cli(*rendered)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png"]


# ----------------------------------------------------------------------------------------------- 8. forged checkpoints


@pytest.mark.parametrize(
    "field,value,complaint",
    [
        ("unit_names", ["height"], "unit_names"),
        ("step", "5", "step"),
        ("step", -1, "step"),
        ("unit_kl", {"continuous": [0.1], "discrete": []}, "unit_kl"),
        ("unit_kl", {"continuous": "x", "discrete": []}, "unit_kl"),
        ("interval", {"count": "2", "sums": {}}, "interval"),
    ],
)
def test_checkpoints_with_wrong_typed_fields_are_refused_when_read(
    cli, run, tmp_path, field, value, complaint
):
    payload = torch.load(run / "ckpt.pt", weights_only=True)
    payload[field] = value
    torch.save(payload, tmp_path / "forged.pt")
    for args in (
        ["units", tmp_path / "forged.pt"],
        ["sample", tmp_path / "forged.pt", "--out", tmp_path / "s.png"],
    ):
        line = _one_line(cli(*args), 1)
        assert "damaged jvae checkpoint" in line and complaint in line
    assert not (tmp_path / "s.png").exists()


# ----------------------------------------------------------------------------------------------- 9. smaller


def test_resume_refuses_a_length_that_ends_before_the_checkpoint(cli, run, tmp_path):
    copy = _copy_run(run, tmp_path)
    before = _digest(copy / "ckpt.pt")
    line = _one_line(cli("train", "--resume", copy, "--set", "train.steps=2"), 2)
    assert "at step 4" in line and _digest(copy / "ckpt.pt") == before


def test_encode_refuses_to_overwrite_its_input(cli, run, tmp_path):
    table = tmp_path / "x.csv"
    table.write_text("precious,data\n")
    _one_line(cli("encode", run / "ckpt.pt", table, "--out", table), 1)
    assert table.read_text() == "precious,data\n"


def test_a_temporary_left_by_a_killed_write_is_removed_on_resume(cli, run, tmp_path):
    copy = _copy_run(run, tmp_path)
    stale = copy / ".ckpt.k1ll3d.tmp.pt"
    stale.write_bytes(b"half a checkpoint")
    assert cli("train", "--resume", copy, "--set", "train.steps=6").exit_code == 0
    assert not stale.exists()


def test_unit_name_errors_are_usage_errors_and_read_only_checkpoints_stay_so(cli, run, tmp_path):
    copy = _copy_run(run, tmp_path)
    _one_line(cli("units", copy / "ckpt.pt", "--name", "0=3bad"), 2)
    (copy / "ckpt.pt").chmod(0o444)
    before = _digest(copy / "ckpt.pt")
    line = _one_line(cli("units", copy / "ckpt.pt", "--name", "0=height"), 1)
    assert "read-only" in line
    assert stat.S_IMODE((copy / "ckpt.pt").stat().st_mode) == 0o444 and _digest(copy / "ckpt.pt") == before


def test_the_log_line_spanning_an_interruption_averages_the_same_steps(tmp_path):
    name, preset = load_preset(
        "digits", ["train.steps=20", "train.log_every=10", "train.checkpoint_every=100"]
    )
    trainer.train(preset, name, tmp_path / "whole")
    calls = iter(range(1000))
    stopped = trainer.train(preset, name, tmp_path / "split", should_stop=lambda: next(calls) >= 15)
    assert stopped.interrupted and stopped.step == 15
    trainer.train(preset, name, tmp_path / "split", resume=True)
    lines = {
        run: [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        for run in ("whole", "split")
    }
    for record in lines["whole"] + lines["split"]:
        record.pop("images_per_sec")
    assert lines["split"] == lines["whole"]


def test_a_stop_request_with_the_last_step_is_not_reported_as_a_finished_run(tmp_path):
    name, preset = load_preset("digits", TINY)
    calls = iter(range(1000))
    result = trainer.train(preset, name, tmp_path / "run", should_stop=lambda: next(calls) >= 4)
    assert result.interrupted and result.step == 4 and result.traversal is None
    assert read_checkpoint(tmp_path / "run" / "ckpt.pt").step == 4


def test_sap_repeats_whatever_the_global_random_state():
    from jvae_cli.metrics import sap_from_codes

    rng = np.random.RandomState(0)
    x_train, x_test = rng.randn(300, 3), rng.randn(200, 3)
    y_train, y_test = (x_train[:, :2] > 0).astype(int), (x_test[:, :2] > 0).astype(int)
    scores = []
    for global_seed in (1, 2):
        np.random.seed(global_seed)
        scores.append(sap_from_codes(x_train, y_train, x_test, y_test, seed=5))
    assert scores[0] == scores[1]


def test_jvae_processes_share_the_cores(tmp_path, monkeypatch):
    from jvae_cli.devices import other_jvae_processes, share_cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("JVAE_THREADS", "1")
    assert share_cpu_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.delenv("JVAE_THREADS")
    alone = other_jvae_processes()
    script = tmp_path / "jvae"
    script.write_text("import time\ntime.sleep(60)\n")
    other = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.time() + 10
        while other_jvae_processes() == alone and time.time() < deadline:
            time.sleep(0.1)
        assert other_jvae_processes() == alone + 1
        cores = len(os.sched_getaffinity(0))
        assert share_cpu_threads() == max(1, cores // (2 + alone))
    finally:
        other.kill()
        other.wait()
        torch.set_num_threads(2)
    monkeypatch.setenv("JVAE_THREADS", "many")
    with pytest.raises(Exception, match="JVAE_THREADS"):
        share_cpu_threads()
