"""The run folder: every name jvae gives a file in it, its checks, its lock and its state.

A run folder holds one trained model (ckpt.pt, metrics.jsonl, preset.toml, traversals.gif, snapshots/,
the checkpoint history ckpt-STEP.pt, a study's run.json and report/); a stack's folder holds its members'
run folders and stack.json. Every other module asks this one for a path, so renaming a file, or adding
one, is an edit here. Reading the files' contents is `runfiles`' job.

One process per run folder: two `jvae train` on one folder would interleave their metrics and leave a
preset from one run beside the checkpoint of the other. The lock is `flock` on a file in the folder, so the
operating system releases it when the process ends however it ends (a crash, kill -9). It is written here
rather than taken from the `filelock` library (which PyTorch already installs) for three reasons:
filelock opens the lock file truncating it on every attempt, so the holder's process id, which the
refusal names, would be erased by each refused process; filelock falls back to a lock made of the file's
existence where `flock` is missing, which a killed run would leave behind for good; and it does not refuse
a lock file planted as a link (O_NOFOLLOW). The flock call is the same either way.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from jvae.base.errors import CheckpointError, RunDirError
from jvae.base.files import check_target, write_text

if TYPE_CHECKING:
    from jvae.modeling.checkpoint import Checkpoint

CHECKPOINT = "ckpt.pt"
HISTORY_GLOB = "ckpt-*.pt"  # the periodic checkpoints train.keep_checkpoints keeps
METRICS = "metrics.jsonl"
PRESET_FILE = "preset.toml"
TRAVERSAL = "traversals.gif"
SNAPSHOTS = "snapshots"  # the traversal snapshots of train.eval_every
LOCK_FILE = ".jvae.lock"
STACK_FILE = "stack.json"  # a stack's folder: which run folders in it train together
RUN_RECORD = "run.json"  # a study's run: how its last attempt went
REPORT = "report"  # the evaluation folder `jvae evaluate` writes beside a checkpoint by default
REPORT_JSON = "report.json"  # an evaluation folder's numbers and settings
UDR_FILE = "udr.json"  # a stack's folder: the scores of `--select udr`
SELECTED_LINK = "selected"  # a stack's folder: the link to the chosen model
COLLAPSE_RECORD = "collapse.json"  # a run's collapse checks and the seed its folder holds
COLLAPSED_ATTEMPTS = "collapsed"  # a restarted run's collapsed attempts, one folder seed-N each

WRITTEN = (CHECKPOINT, METRICS, PRESET_FILE, TRAVERSAL)  # what training writes into a run folder
RESTART_KEEPS = (LOCK_FILE, COLLAPSE_RECORD, COLLAPSED_ATTEMPTS)  # what a restarted run's folder holds


def checkpoint(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT


def kept_checkpoint(run_dir: Path, step: int) -> Path:
    """The history's checkpoint of `step` (train.keep_checkpoints)."""
    return Path(run_dir) / f"ckpt-{step:06d}.pt"


def kept_checkpoints(run_dir: Path) -> list[Path]:
    """The history's checkpoints, oldest first."""
    return sorted(Path(run_dir).glob(HISTORY_GLOB))


def metrics(run_dir: Path) -> Path:
    return Path(run_dir) / METRICS


def preset_file(run_dir: Path) -> Path:
    return Path(run_dir) / PRESET_FILE


def traversal(run_dir: Path) -> Path:
    return Path(run_dir) / TRAVERSAL


def snapshot(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / SNAPSHOTS / f"step-{step:06d}.gif"


def run_record(run_dir: Path) -> Path:
    return Path(run_dir) / RUN_RECORD


def report_folder(run_dir: Path) -> Path:
    """Where `jvae evaluate` (and a study) puts the report of the run's checkpoint."""
    return Path(run_dir) / REPORT


def report_file(report_dir: Path) -> Path:
    return Path(report_dir) / REPORT_JSON


def stack_file(stack_dir: Path, first: str | None = None) -> Path:
    """A stack's file; `first`: the stack shares its folder with other runs (a study's), and its file is
    named after its first member (stack-NAME.json)."""
    return Path(stack_dir) / (f"stack-{first}.json" if first is not None else STACK_FILE)


# ----------------------------------------------------------------------------------------------- checks


def check_name(name: str, what: str) -> None:
    """A folder inside a stack's or study's folder: a plain name, never a path out of it."""
    if not name or Path(name).name != name or name in (".", "..") or "\x00" in name:
        raise RunDirError(f"{what}: {name!r} is not a plain folder name (no slashes)")


def check_run_dir(run_dir: Path, resume: bool) -> Checkpoint | None:
    """Refuse a folder training cannot use, before anything is created; the checkpoint to resume."""
    from jvae.modeling.checkpoint import read_checkpoint

    ckpt_path = checkpoint(run_dir)
    if run_dir.is_dir():  # refused now rather than after hours of training
        for name in WRITTEN:
            check_target(run_dir / name)
    if resume:
        if not ckpt_path.is_file():
            raise RunDirError(f"nothing to resume: {ckpt_path} does not exist")
        saved = read_checkpoint(ckpt_path)
        if saved.state is None:
            origin = (saved.imported or {}).get("source", "another program")
            raise RunDirError(
                f"{ckpt_path} was imported from {origin} and holds no training state (optimiser, data order) "
                "to resume"
            )
        return saved
    if ckpt_path.exists():
        raise RunDirError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick --out")
    if run_dir.exists() and (
        not run_dir.is_dir() or any(entry.name not in RESTART_KEEPS for entry in run_dir.iterdir())
    ):
        raise RunDirError(f"{run_dir} exists and is not an empty folder; pick a new or empty --out")
    return None


def remove_if_only_the_lock(run_dir: Path) -> None:
    """A run that failed before writing anything leaves no folder behind, as before locking existed."""
    entries = list(run_dir.iterdir())
    if [entry.name for entry in entries] == [LOCK_FILE]:
        entries[0].unlink(missing_ok=True)
        run_dir.rmdir()


# ----------------------------------------------------------------------------------------------- lock


class RunLock:
    """Held from `__enter__` to `__exit__`; a second holder is refused with one line."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise RunDirError(f"cannot lock {self.path.parent}: {self.path} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "another process"
            os.close(fd)
            raise RunDirError(
                f"{self.path.parent} is in use by jvae process {holder}; wait for it to finish or pick "
                "another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock; the file stays, so no second inode can appear
            self.fd = None


def wait_until_free(run_dir: Path, seconds: float = 120.0) -> bool:
    """Wait while another process (a dying earlier attempt) holds the run's lock; True once it is free.
    The lock is only tried, never kept: the run that follows takes it."""
    lock = Path(run_dir) / LOCK_FILE
    deadline = time.monotonic() + seconds
    while lock.is_file():
        with open(lock, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


# ----------------------------------------------------------------------------------------------- state

Progress = Literal["pending", "interrupted", "trained"]


def progress(run_dir: Path) -> Progress:
    """trained (every step and the final figures), interrupted (a checkpoint to resume) or pending (nothing
    worth keeping: no checkpoint, or one that does not load)."""
    from jvae.modeling.checkpoint import read_checkpoint

    path = checkpoint(run_dir)
    if not path.is_file():
        return "pending"
    try:
        saved = read_checkpoint(path)
    except CheckpointError:
        return "pending"
    total = saved.state.total_steps if saved.state is not None else saved.step
    if saved.step < total or not traversal(run_dir).is_file():
        return "interrupted"
    return "trained"


def is_stack(folder: Path) -> bool:
    return (folder / STACK_FILE).is_file() and not checkpoint(folder).exists()


def resumable_stack(path: Path) -> Path | None:
    """The stack file `jvae train --resume PATH` continues: PATH itself when it names one (a stack sharing
    its folder, as --members and --folders make, is named stack-NAME.json), the folder's stack.json, or its
    only stack-NAME.json; None when PATH holds no stack."""
    path = Path(path)
    if path.is_file():
        named = path.name == STACK_FILE or (path.name.startswith("stack-") and path.suffix == ".json")
        return path if named else None
    if checkpoint(path).exists() or not path.is_dir():
        return None
    if (path / STACK_FILE).is_file():
        return path / STACK_FILE
    shared = sorted(path.glob("stack-*.json"))
    if len(shared) > 1:
        listed = ", ".join(str(file) for file in shared)
        raise RunDirError(f"{path} holds several stacks; name the one to continue: {listed}")
    return shared[0] if shared else None


def read_stack(stack_dir: Path, path: Path | None = None) -> list[str]:
    """The member folder names of the stack in `stack_dir`, from its stack.json (or the stack file
    `path`)."""
    from jvae.base.runfiles import RunFileError, read_json

    path = stack_file(stack_dir) if path is None else path
    try:
        body = read_json(path)
    except RunFileError as error:
        raise RunDirError(str(error)) from None
    names = body.get("members") if isinstance(body, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise RunDirError(f"{path}: not a jvae stack file (members is not a list of folder names)")
    if any(Path(n).name != n or n in (".", "..") for n in names):
        raise RunDirError(f"{path}: a member folder must be a plain name inside the stack's folder")
    return names


def write_stack(path: Path, preset_name: str, names: list[str]) -> None:
    write_text(path, json.dumps({"preset": preset_name, "members": names}) + "\n")


def parse_record(line: str) -> dict[str, Any] | None:
    """A metrics.jsonl line, or None for a line a crash cut short."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("step"), int) else None


def trim_metrics(run_dir: Path, last_step: int) -> None:
    """Drop log lines past the checkpoint being resumed, which a crash may have left behind."""
    path = metrics(run_dir)
    if not path.exists():
        return
    kept = []
    for line in path.read_text(errors="replace").splitlines():
        record = parse_record(line)
        if record is not None and record["step"] <= last_step:
            kept.append(line)
    write_text(path, "".join(line + "\n" for line in kept))
