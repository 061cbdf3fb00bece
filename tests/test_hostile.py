"""jvae used as a hostile or careless user would: planted links, two runs on one folder, a full disk, NaN,
decompression bombs, escape sequences, numbers at the edges, forged checkpoints. Each must end in one line on
stderr with the documented exit code, and nothing outside the folder the user named may change."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import pickle
import re
import resource
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from jvae.modeling.checkpoint import read_checkpoint
from jvae.modeling.presets import load_preset
from jvae.training import trainer

TINY = ["train.steps=4", "train.log_every=2", "train.checkpoint_every=2"]


def _one_line(result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    return lines[0]


def _says(line: str, expected: str | re.Pattern[str]) -> bool:
    """A message of jvae's own, word for word; a dependency's (pydantic's bounds) by what it names."""
    return expected.search(line) is not None if isinstance(expected, re.Pattern) else expected in line


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def run(digits_run) -> Path:
    """A finished 4-step digits run (the session's, `TINY`): checkpoint, metrics, preset and traversal."""
    return digits_run


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
            "import sys, time; from jvae.runs.runfolder import RunLock; RunLock(sys.argv[1]).__enter__(); "
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

    command = [sys.executable, "-m", "jvae", *args]
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


def test_a_stop_request_with_the_last_step_is_not_reported_as_a_finished_run(tmp_path):
    name, preset = load_preset("digits", TINY)
    calls = iter(range(1000))
    result = trainer.train(preset, name, tmp_path / "run", should_stop=lambda: next(calls) >= 4)
    assert result.interrupted and result.step == 4 and result.traversal is None
    assert read_checkpoint(tmp_path / "run" / "ckpt.pt").step == 4


def test_sap_repeats_whatever_the_global_random_state():
    from jvae.use.metrics import sap_from_codes

    rng = np.random.RandomState(0)
    x_train, x_test = rng.randn(300, 3), rng.randn(200, 3)
    y_train, y_test = (x_train[:, :2] > 0).astype(int), (x_test[:, :2] > 0).astype(int)
    scores = []
    for global_seed in (1, 2):
        np.random.seed(global_seed)
        scores.append(sap_from_codes(x_train, y_train, x_test, y_test, seed=5))
    assert scores[0] == scores[1]


def test_jvae_processes_share_the_cores(tmp_path, monkeypatch):
    from jvae.base.devices import other_jvae_processes, share_cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("JVAE_THREADS", "1")
    assert share_cpu_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.delenv("JVAE_THREADS")
    alone = other_jvae_processes()

    def counted(expected: int) -> int:
        """The count once it reaches `expected` (or after 10 s): /proc shows a new or stopped process late."""
        deadline = time.time() + 10
        while other_jvae_processes() != expected and time.time() < deadline:
            time.sleep(0.1)
        return other_jvae_processes()

    script = tmp_path / "jvae"
    script.write_text("import time\ntime.sleep(60)\n")
    other = subprocess.Popen([sys.executable, str(script)])
    try:
        assert counted(alone + 1) == alone + 1
        cores = len(os.sched_getaffinity(0))
        assert share_cpu_threads() == max(1, cores // (2 + alone))
        other.send_signal(signal.SIGSTOP)  # a run paused with Ctrl-Z holds no core
        assert counted(alone) == alone
        other.send_signal(signal.SIGCONT)
        assert counted(alone + 1) == alone + 1
    finally:
        other.kill()
        other.wait()
        torch.set_num_threads(2)
    monkeypatch.setenv("JVAE_THREADS", "many")
    with pytest.raises(Exception, match="JVAE_THREADS"):
        share_cpu_threads()


# ----------------------------------------------------------------------------------------------- 8. sweeps


def test_grid_values_whose_names_collide_get_folders_of_their_own():
    from jvae.studies.study import Study

    names = [spec.name for spec in Study(["digits"], [0], {"train.lr": ["0.0005", "1.0005"]}).runs()]
    assert names == ["digits-lr=0.0005-seed0", "digits-lr=1.0005-seed0"]
    cleaned = Study(["digits"], [0], {"description": ["a b", "a_b"]}).runs()  # both clean up to a_b
    assert len({spec.name for spec in cleaned}) == 2
    assert all(spec.name.startswith("digits-description=a_b-seed0-") for spec in cleaned)


@pytest.mark.parametrize(
    "args",
    [
        ["sweep", "--preset", "digits", "--seeds", "0-4294967294", "--out", "OUT"],
        [
            "sweep",
            "--preset",
            "digits",
            "--seeds",
            "0-999",
            "--grid",
            "loss.beta=" + ",".join(str(i) for i in range(1, 12)),
        ],
        ["train", "--preset", "digits", "--seeds", "0-100000", "--out", "OUT"],
        ["train", "--preset", "digits", "--seeds", "0-299", "--out", "OUT"],
    ],
)
def test_absurd_seed_counts_are_refused_before_anything_is_made(cli, tmp_path, args):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    line = _one_line(cli(*args), 2)
    assert time.monotonic() - started < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # kB
    assert any(word in line for word in ("at most", "more than"))
    assert not (tmp_path / "out").exists()


def test_one_ctrl_c_stops_the_whole_sweep_and_the_rerun_finishes_exactly_the_rest(cli, tmp_path):
    from jvae.studies.study import Study, run_state

    study = tmp_path / "study"
    sets = ["train.steps=100", "train.log_every=5", "train.checkpoint_every=50", "train.batch_size=16"]
    args = ["sweep", "--preset", "digits", "--seeds", "0-2", *(x for s in sets for x in ("--set", s))]
    args += ["--out", str(study)]
    sweep = subprocess.Popen(
        [sys.executable, "-m", "jvae", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "JVAE_THREADS": "1"},
    )
    started = study / "digits-seed0" / "metrics.jsonl"
    deadline = time.time() + 240
    while not started.is_file() and time.time() < deadline and sweep.poll() is None:
        time.sleep(0.1)
    assert started.is_file()
    sweep.send_signal(signal.SIGINT)  # once, to the sweep only, as a terminal's Ctrl-C reaches it
    _, stderr = sweep.communicate(timeout=240)
    assert sweep.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("error: interrupted")
    definition = Study(["digits"], [0, 1, 2], {}, sets)
    names = ["digits-seed0", "digits-seed1", "digits-seed2"]
    states = {name: run_state(study / name, definition) for name in names}
    assert states["digits-seed0"] == "interrupted"  # stopped where it was, with a checkpoint
    assert states["digits-seed1"] == states["digits-seed2"] == "pending"  # never started
    assert not (study / "digits-seed1").exists() and not (study / "digits-seed2").exists()
    stopped_at = read_checkpoint(study / "digits-seed0" / "ckpt.pt").step
    assert 0 < stopped_at < 100
    (study / "digits-seed0" / "run.json").write_text('{"seconds": "a while"')  # damaged by hand

    result = cli(*args, "--jobs", "3")  # the rest side by side: one run resumed, two started
    assert result.exit_code == 0, result.stderr
    assert "3/3 runs finished" in result.stdout
    records = {name: json.loads((study / name / "run.json").read_text()) for name in names}
    assert records["digits-seed0"]["started_as"] == "interrupted"  # resumed, not started over
    assert [records[name]["started_as"] for name in names[1:]] == ["pending", "pending"]
    assert all(run_state(study / name, definition) == "finished" for name in names)
    lines = (study / "digits-seed0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(5, 101, 5))


def test_a_damaged_study_manifest_is_one_line(cli, tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.json").write_text("[" * 100000 + "]" * 100000)
    line = _one_line(cli("sweep", "--preset", "digits", "--out", study), 2)
    assert "study.json" in line and "nested deeper" in line
    assert _one_line(cli("compare", study), 1).count("study.json") == 1


# ----------------------------------------------------------------------------------------------- 9. damaged files


REPORT = {"settings": {"seed": 0}, "metrics": {"elbo": {"kl_continuous": 2.0, "kl_discrete": 1.0}}}


def _two_runs(run: Path, tmp_path: Path) -> tuple[Path, Path]:
    made = []
    for name in ("good", "bad"):
        folder = tmp_path / name
        folder.mkdir()
        for item in run.iterdir():
            if item.is_file():
                (folder / item.name).write_bytes(item.read_bytes())
        (folder / "report").mkdir()
        (folder / "report" / "report.json").write_text(json.dumps(REPORT))
        (folder / "run.json").write_text(json.dumps({"seconds": 3.5, "state": "finished"}))
        made.append(folder)
    return made[0], made[1]


@pytest.mark.parametrize(
    "file, content",
    [
        ("report/report.json", b"\x00\xff\xfe binary"),
        ("report/report.json", b'{"settings": {"seed": "zero"}, "metrics": {}}'),
        ("report/report.json", b'{"metrics": {"elbo": {"kl_continuous": "x", "kl_discrete": 1}}}'),
        ("report/report.json", b"[" * 100000 + b"]" * 100000),
        ("preset.toml", b"[loss\nkind ="),
        ("preset.toml", b"[loss]\nkind = 3\n"),
        ("metrics.jsonl", b'{"step": 5, "loss": "high", "recon": 1, "kl_cont": [], "kl_disc": []}\n'),
        ("metrics.jsonl", b'{"step": 6}\n'),
        ("run.json", b'{"seconds": "fast"}'),
        ("run.json", b'{"seconds": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ],
)
def test_compare_names_a_damaged_file_in_one_line_and_still_reports_the_others(
    cli, run, tmp_path, file, content
):
    good, bad = _two_runs(run, tmp_path)
    if file == "metrics.jsonl":
        content = (bad / file).read_bytes() + content
    (bad / file).write_bytes(content)
    result = cli("compare", good, bad, "--out", tmp_path / "table")
    line = _one_line(result, 1)
    assert str(bad / file) in line
    rows = json.loads((tmp_path / "table" / "runs.json").read_text())
    assert [row["run"] for row in rows] == ["good"] and rows[0]["seconds"] == 3.5
    assert "good" in result.stdout


def test_plot_draws_the_readable_runs_and_names_the_damaged_one(cli, run, tmp_path):
    good, bad = _two_runs(run, tmp_path)
    with open(bad / "metrics.jsonl", "a") as log:
        log.write('{"step": 9, "loss": 1.0, "recon": 1.0, "kl_cont": "many", "kl_disc": []}\n')
    result = cli("plot", good, bad, "--out", tmp_path / "curves.png")
    line = _one_line(result, 1)
    assert str(bad / "metrics.jsonl") in line and "line" in line and "kl_cont" in line
    assert "curves of good" in result.stdout and (tmp_path / "curves.png").is_file()


def test_evaluate_of_a_run_folder_names_a_damaged_checkpoint_and_scores_the_others(cli, run, tmp_path):
    copy = _copy_run(run, tmp_path)
    (copy / "ckpt-000002.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    result = cli("evaluate", copy, "--metrics", "elbo", "--fast", "--out", tmp_path / "history")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(copy / "ckpt-000002.pt") in errors[0]
    rows = json.loads((tmp_path / "history" / "checkpoints.json").read_text())
    assert [row["checkpoint"] for row in rows] == [str(copy / "ckpt.pt")]


# ----------------------------------------------------------------------------------------------- 10. CSV formulas


def test_csv_cells_that_a_spreadsheet_would_run_are_written_as_text(cli, run, tmp_path, monkeypatch):
    import csv

    from PIL import Image

    named = tmp_path / "=HYPERLINK(1)"
    named.mkdir()
    for item in run.iterdir():
        if item.is_file():
            (named / item.name).write_bytes(item.read_bytes())
    assert cli("compare", named, "--out", tmp_path / "table").exit_code == 0
    with open(tmp_path / "table" / "runs.csv", newline="") as table:
        row = next(csv.DictReader(table))
    assert row["run"] == "'=HYPERLINK(1)" and float(row["final_loss"]) > 0
    assert json.loads((tmp_path / "table" / "runs.json").read_text())[0]["run"] == "=HYPERLINK(1)"

    monkeypatch.chdir(tmp_path)
    for name in ("@SUM(A1).png", "-2+3.png", "+cmd.png"):
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / name)
    images = ["@SUM(A1).png", "-2+3.png", "+cmd.png"]
    result = cli("encode", "--out", "codes.csv", run / "ckpt.pt", "--", *images)
    assert result.exit_code == 0, result.stderr
    with open(tmp_path / "codes.csv", newline="") as table:
        rows = list(csv.DictReader(table))
    assert [r["path"] for r in rows] == ["'@SUM(A1).png", "'-2+3.png", "'+cmd.png"]
    assert all(isinstance(float(r["mean_0"]), float) for r in rows)  # numbers stay numbers


# ----------------------------------------------------------------------------------------------- 11. trackers


@pytest.mark.parametrize("tracker", ["tensorboard", "mlflow"])
@pytest.mark.parametrize("damage", ["read-only", "link"])
def test_a_tracker_folder_obeys_the_run_folder_rules(cli, run, tmp_path, outside, tracker, damage):
    copy = _copy_run(run, tmp_path)
    folder = copy / tracker
    if damage == "read-only":
        folder.mkdir()
        folder.chmod(0o555)
    else:
        folder.symlink_to(outside.parent, target_is_directory=True)
    try:
        line = _one_line(cli("train", "--resume", copy, "--set", "train.steps=6", "--track", tracker), 1)
    finally:
        if not folder.is_symlink():
            folder.chmod(0o755)
    assert ("read-only" if damage == "read-only" else "symbolic link") in line and str(folder) in line
    assert sorted(p.name for p in outside.parent.iterdir()) == ["precious.txt"]
    assert read_checkpoint(copy / "ckpt.pt").step == 4  # nothing was trained or lost


def test_a_damaged_mlflow_run_id_is_one_line(cli, run, tmp_path):
    copy = _copy_run(run, tmp_path)
    (copy / "mlflow").mkdir()
    (copy / "mlflow" / "run_id").write_text("../../not-a-run\x00")
    line = _one_line(cli("train", "--resume", copy, "--set", "train.steps=6", "--track", "mlflow"), 1)
    assert "run_id" in line and "not an MLflow run id" in line


# ----------------------------------------------------------------------------------------------- 12. downloads


class _Hostile(http.server.BaseHTTPRequestHandler):
    """A mirror that declares a gigabyte, sends without end, or sends a byte at a time."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        kind = self.path.strip("/").split("/")[0]
        self.send_response(200)
        if kind == "huge":
            self.send_header("Content-Length", str(2**30))
        self.end_headers()
        try:
            if kind == "huge":
                self.wfile.write(b"\0" * 1000)
            elif kind == "endless":
                while True:
                    self.wfile.write(b"\0" * 65536)
            else:
                for _ in range(2000):
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(0.02)
        except OSError:
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def hostile_mirror():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize(
    "kind, limits, expected",
    [
        ("huge", {}, "declares 1024.0 MiB"),
        ("endless", {}, "more than 1.0 MiB"),
        ("trickle", {"STALL_SECONDS": 1.0}, "stalled"),
        ("trickle", {"TOTAL_SECONDS": 1.0, "STALL_BYTES": 1}, "took more than 1 s"),
    ],
)
def test_downloads_are_bounded_in_size_and_time_and_keep_nothing(
    cli, tmp_path, monkeypatch, hostile_mirror, kind, limits, expected
):
    from jvae.data import download

    for name, value in limits.items():
        monkeypatch.setattr(download, name, value)
    monkeypatch.setenv("JVAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("JVAE_PRETRAINED_URL", f"{hostile_mirror}/{kind}")
    started = time.monotonic()
    line = _one_line(cli("sample", "official:mnist", "--out", tmp_path / "s.png"), 1)
    assert expected in line and "nothing was kept" in line
    assert time.monotonic() - started < 30
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


# ----------------------------------------------------------------------------------------------- 13. sizes


SPECS = {
    "dataset": "mnist",
    "latent_spec": {"cont": 10, "disc": [10]},
    "cont_capacity": [0.0, 5.0, 25000, 30.0],
    "disc_capacity": [0.0, 5.0, 25000, 30.0],
    "batch_size": 64,
    "lr": [5e-4],
    "epochs": [100],
}


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"latent_spec": {"cont": 10, "disc": [10**9]}}, "at most 1000 categories"),
        ({"dataset": ["mnist"]}, "dataset ['mnist'] is not one"),
        ({"cont_capacity": [0.0, 5.0, float("inf"), 30.0]}, "finite numbers"),
        ({"batch_size": 10**12}, re.compile(r"batch_size: .*\b16384\b")),
        ("deep", "nested deeper than 64"),
    ],
)
def test_import_official_refuses_crafted_specs_in_one_line(cli, tmp_path, change, expected):
    folder = tmp_path / "official"
    folder.mkdir()
    text = "[" * 100000 + "]" * 100000 if change == "deep" else json.dumps({**SPECS, **change})
    (folder / "specs.json").write_text(text)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    line = _one_line(cli("import", "official", folder, "--out", tmp_path / "m.pt"), 1)
    assert _says(line, expected) and "specs.json" in line
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # kB
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.discrete=[1000000000]", "at most 1000 categories"),
        ("model.discrete=[2," + ",".join(["2"] * 100) + "]", "at most 64 items"),
        ("model.hidden=1000000000", re.compile(r"model\.hidden: .*\b8192\b")),
        ("model.continuous=4000", "at most 8192"),
        ("train.batch_size=100000000", re.compile(r"train\.batch_size: .*\b16384\b")),
        (
            "loss.continuous_capacity.steps=100000000000000",
            re.compile(r"loss\.continuous_capacity\.steps: .*\b1000000000\b"),
        ),
        ("model.discrete=" + "[" * 5000 + "]" * 5000, "nested deeper than 64"),
        ("FILE", "nested deeper than 64"),
    ],
)
def test_preset_sizes_are_bounded_where_they_enter(cli, tmp_path, override, expected):
    preset, sets = "digits", ["--set", override]
    if override == "model.continuous=4000":
        sets += ["--set", "model.discrete=[1000,1000,1000,1000,1000]"]
    if override == "FILE":  # a preset file of the user's, nested without end
        preset, sets = str(tmp_path / "deep.toml"), []
        Path(preset).write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    line = _one_line(cli("train", "--preset", preset, *sets, "--out", tmp_path / "r"), 2)
    assert _says(line, expected)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args", [["--n", "4096", "--scale", "16"], ["--per-category", "--n", "4096", "--scale", "8"]]
)
def test_sample_refuses_from_its_memory_estimate(cli, run, tmp_path, args):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    line = _one_line(cli("sample", run / "ckpt.pt", *args, "--out", tmp_path / "s.png"), 2)
    assert "GiB" in line and "smaller --scale" in line
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # kB
    assert not (tmp_path / "s.png").exists()


# ----------------------------------------------------------------------------------------------- 14. datasets


def test_new_dataset_files_are_checked_before_they_are_read(tmp_path, monkeypatch):
    import h5py
    from scipy.io import savemat

    from jvae.base.errors import DataError
    from jvae.data.registry import DATASETS
    from jvae.data.smallnorb import read_matrix
    from jvae.modeling.presets import DataConfig

    with h5py.File(tmp_path / "3dshapes.h5", "w") as handle:
        handle.create_group("images")["inner"] = np.zeros(3)
        handle["labels"] = np.zeros((4, 6))
    shapes = DataConfig(dataset="shapes3d", image_size=64, channels=3)
    with pytest.raises(DataError, match="datasets 'images' and 'labels'"):
        DATASETS["shapes3d"].open(shapes, str(tmp_path / "3dshapes.h5"))

    header = np.array([0x1E3D4C55, 4, 2**31 - 1, 2, 96, 96], dtype="<i4")
    (tmp_path / "norb-dat.mat").write_bytes(header.tobytes() + b"\0" * 100)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match="ends after 100 of its 39582418581504 values"):
        read_matrix(tmp_path / "norb-dat.mat")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # kB

    (tmp_path / "cars" / "cars").mkdir(parents=True)
    savemat(tmp_path / "cars" / "cars" / "car_000_mesh.mat", {"im": np.zeros((600, 2, 3, 24, 4), np.uint8)})
    cars = DataConfig(dataset="cars3d", image_size=64, channels=3)
    with pytest.raises(DataError, match="at most 256"):
        DATASETS["cars3d"].open(cars, str(tmp_path / "cars"))


def test_a_damaged_preprocessing_cache_is_built_again(tmp_path, monkeypatch):
    import h5py

    from jvae.data.registry import DATASETS
    from jvae.data.shapes3d import index_to_factors
    from jvae.modeling.presets import DataConfig

    monkeypatch.setenv("JVAE_CACHE", str(tmp_path / "cache"))
    with h5py.File(tmp_path / "3dshapes.h5", "w") as handle:
        handle["images"] = np.full((8, 64, 64, 3), 100, np.uint8)
        handle["labels"] = index_to_factors(np.arange(8)).astype(np.float64)
    config = DataConfig(dataset="shapes3d", image_size=64, channels=3)
    assert len(DATASETS["shapes3d"].open(config, str(tmp_path / "3dshapes.h5"))) == 8
    (entry,) = (tmp_path / "cache").glob("shapes3d-*")
    for damage in (b"\x93NUMPY garbage", None):
        if damage is None:
            (entry / "meta.json").write_text('{"count": "eight"')
        else:
            (entry / "images.npy").write_bytes(damage)
        source = DATASETS["shapes3d"].open(config, str(tmp_path / "3dshapes.h5"))
        assert len(source) == 8
        assert float(source.images(torch.arange(8), torch.device("cpu")).mean()) == pytest.approx(100 / 255)


# ----------------------------------------------------------------------------------------------- 15. explorer


def test_the_explorer_answers_broken_and_heavy_uploads_and_keeps_serving(run, capfd):
    import http.client
    import socket
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from jvae.explore.explorer import Explorer
    from jvae.explore.server import listen, server
    from jvae.modeling.checkpoint import load_checkpoint

    sock = listen("127.0.0.1", 0)
    running = server(Explorer(load_checkpoint(run / "ckpt.pt"), torch.device("cpu"), []), sock)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"

    def post(body: bytes) -> int:
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{url}/api/encode", data=body)) as reply:
                return reply.status
        except urllib.error.HTTPError as refusal:
            return refusal.code

    try:
        for declared in (10**6, 10**15):  # the client goes away mid-upload
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(
                b"POST /api/encode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % declared
                + b"\0" * 1000
            )
            client.close()
        for declared_text, expected in ((b"9" * 20, b" 413 "), (b"12x", b" 400 ")):  # beyond any int64
            client = socket.create_connection(("127.0.0.1", port), timeout=10)
            client.sendall(
                b"POST /api/encode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
                + declared_text
                + b"\r\n\r\n"
            )
            assert expected in client.recv(200).split(b"\r\n")[0] + b" "  # answered now, no body awaited
            client.close()
        buffer = io.BytesIO()
        header = struct.pack(">IIBBBBB", 8000, 5000, 8, 2, 0, 0, 0)  # 40 megapixels of RGB

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        buffer.write(
            b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        )
        bomb = buffer.getvalue()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(post, [bomb] * 6))
        assert statuses == [400] * 6
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 400_000  # kB
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/api/model")
        assert connection.getresponse().status == 200
    finally:
        running.should_exit = True
        thread.join(timeout=10)
        sock.close()
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "Exception" not in captured.err, captured.err


def test_a_raw_pickle_as_official_weights_is_one_line_without_pytorchs_warning(tmp_path):
    """In a real process (pytest would swallow the warning): PyTorch's note about the pickle protocol must not
    come before jvae's own one-line error."""
    folder = tmp_path / "official"
    folder.mkdir()
    (folder / "specs.json").write_text(json.dumps(SPECS))
    (folder / "model.pt").write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    done = subprocess.run(
        [sys.executable, "-m", "jvae", "import", "official", str(folder), "--out", str(tmp_path / "m.pt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {folder / 'model.pt'}: damaged or not a PyTorch state dict (not a pickle of tensors)"
    ]
    assert not (tmp_path / "m.pt").exists()
