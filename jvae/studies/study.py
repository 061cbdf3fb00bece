"""Studies: many runs of presets x seeds x a grid of `--set` values, each in its own run folder, run by
local processes or a Slurm job array, and resumable.

A study folder holds `study.json` (what the study is: presets, seeds, grid, fixed overrides, evaluation)
and one run folder per combination. Running the study again skips finished runs, resumes interrupted ones
from their checkpoints and starts failed ones over; a different study is never mixed into the folder.
Each run is the plain `jvae train` (and `jvae evaluate`) command line in a child process, so a study's runs
are exactly what a user would get by typing them, and one crashing run cannot take the others down.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from jvae.base.devices import THREADS_ENV
from jvae.base.errors import JvaeError, PresetError, UsageError
from jvae.base.files import write_text
from jvae.base.limits import RUNS_MAX, SEED_MAX, SEEDS_MAX
from jvae.base.runfiles import RunFileError, read_manifest, read_run_record
from jvae.modeling.presets import load_preset
from jvae.runs import runfolder, runplan

MANIFEST = "study.json"


@dataclass(frozen=True)
class RunSpec:
    name: str  # the run folder's name inside the study
    preset: str
    seed: int
    overrides: tuple[str, ...]  # the grid's values for this run, then the study's fixed --set values

    def train_args(self, run_dir: Path, resume: bool) -> list[str]:
        if resume:
            return ["train", "--resume", str(run_dir)]
        sets = [item for text in (*self.overrides, f"train.seed={self.seed}") for item in ("--set", text)]
        return ["train", "--preset", self.preset, *sets, "--out", str(run_dir)]


@dataclass
class Study:
    presets: list[str]
    seeds: list[int]
    grid: dict[str, list[str]]
    sets: list[str] = field(default_factory=list)
    evaluate: bool = False
    metrics: list[str] = field(default_factory=list)

    def definition(self) -> dict[str, Any]:
        return asdict(self)

    def size(self) -> int:
        """How many runs the study holds, counted without listing them."""
        count = len(self.presets) * len(self.seeds)
        for values in self.grid.values():
            count *= len(values)
        return count

    def runs(self) -> list[RunSpec]:
        if self.size() > RUNS_MAX:
            raise UsageError(
                f"this study would hold {self.size()} runs; at most {RUNS_MAX} (fewer --seeds or --grid values)"
            )
        keys = list(self.grid)
        specs = []
        for preset in self.presets:
            for values in itertools.product(*(self.grid[k] for k in keys)):
                assigned = tuple(f"{k}={v}" for k, v in zip(keys, values))
                for seed in self.seeds:
                    name = _folder_name(preset, assigned, seed)
                    specs.append(RunSpec(name, preset, seed, (*assigned, *self.sets)))
        return _distinct_names(specs)


NAME_MAX = 160  # characters of a run folder's name before it is shortened to a prefix and a digest


def _folder_name(preset: str, assigned: tuple[str, ...], seed: int) -> str:
    """preset-leaf=value-...-seedN: each grid key by its last part, its value whole (lr=0.0005)."""
    parts = [Path(preset).stem]
    for text in assigned:
        key, _, value = text.partition("=")
        parts.append(f"{key.split('.')[-1]}={value}")
    return re.sub(r"[^A-Za-z0-9=._-]+", "_", "-".join([*parts, f"seed{seed}"]))


def _digest(spec: RunSpec) -> str:
    text = json.dumps([spec.preset, spec.seed, list(spec.overrides)])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _distinct_names(specs: list[RunSpec]) -> list[RunSpec]:
    """Every run its own folder: names that the character clean-up made equal (a/b and a_b) or that are too
    long for a file system get a digest of the run's settings, so two settings never share a folder."""
    counts: dict[str, int] = {}
    for spec in specs:
        counts[spec.name] = counts.get(spec.name, 0) + 1
    distinct = []
    for spec in specs:
        if counts[spec.name] > 1 or len(spec.name) > NAME_MAX or spec.name.startswith("."):
            name = f"{spec.name[: NAME_MAX - 20].lstrip('.')}-{_digest(spec)}"
            spec = RunSpec(name, spec.preset, spec.seed, spec.overrides)
        distinct.append(spec)
    if len({spec.name for spec in distinct}) != len(distinct):
        raise UsageError("two runs of this study would share a folder; give each grid value once")
    return distinct


# ----------------------------------------------------------------------------------------------- parsing


def parse_seeds(text: str) -> list[int]:
    """`0-4`, `0,3,7` or a mix (`0-2,9`); at most SEEDS_MAX of them, counted before any list is made."""
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d{1,20})(?:-(\d{1,20}))?", part)
        if not match:
            raise UsageError(f"--seeds {text!r}: expected a range 0-4 or a list 0,3,7")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low or high > SEED_MAX:
            raise UsageError(f"--seeds {text!r}: {part} is not a range of seeds from 0 to {SEED_MAX}")
        ranges.append((low, high))
    if sum(high - low + 1 for low, high in ranges) > SEEDS_MAX:
        raise UsageError(f"--seeds {text!r}: more than {SEEDS_MAX} seeds; give at most {SEEDS_MAX}")
    return list(dict.fromkeys(seed for low, high in ranges for seed in range(low, high + 1)))


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """`--grid loss.beta=1,4,16` (repeatable): every value of every key, combined."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        listed = [v.strip() for v in values.split(",")]
        if not sep or not key:
            raise UsageError(f"--grid {item!r}: expected section.key=v1,v2,..., e.g. loss.beta=1,4,16")
        if any(not v for v in listed):
            raise UsageError(f"--grid {item!r}: an empty value; list values separated by commas")
        if key in grid:
            raise UsageError(f"--grid {key} given twice; list all its values in one --grid")
        grid[key] = listed
    return grid


def check_study(study: Study) -> None:
    """Every run's preset resolves, so a typo in a key or a value is one line before anything starts."""
    if not study.presets:
        raise UsageError("choose at least one --preset")
    for spec in study.runs():
        try:
            load_preset(spec.preset, [*spec.overrides, f"train.seed={spec.seed}"])
        except PresetError as exc:
            raise UsageError(f"run {spec.name}: {str(exc).splitlines()[0]}") from None


def prepare(folder: Path, study: Study) -> list[RunSpec]:
    """Write (or check) the study's manifest; refuse a folder that holds a different study."""
    manifest = folder / MANIFEST
    definition = study.definition()
    if manifest.is_file():
        try:
            existing = read_manifest(manifest).study.model_dump()
        except RunFileError as exc:
            raise UsageError(f"{exc}; pick another --out") from None
        if existing != definition:
            changed = sorted(
                k for k in set(existing) | set(definition) if existing.get(k) != definition.get(k)
            )
            raise UsageError(
                f"{folder} holds another study (its {', '.join(changed)} differ); pick another --out or repeat "
                "the same options"
            )
        runs = load_study(folder)[1]  # the folders it was started with, whatever names jvae gives now
        if len({spec.name for spec in runs}) != len(runs):
            runs = study.runs()  # written by a jvae that gave two settings one folder
    elif folder.exists() and any(folder.iterdir()):
        raise UsageError(f"{folder} exists and is not a study folder; pick a new or empty --out")
    else:
        runs = study.runs()
    folder.mkdir(parents=True, exist_ok=True)
    body = {"study": definition, "runs": [asdict(spec) for spec in runs]}
    write_text(manifest, json.dumps(body, indent=2) + "\n")
    return runs


def load_study(folder: Path) -> tuple[Study, list[RunSpec]]:
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        raise UsageError(f"{folder}: no {MANIFEST} (not a jvae study folder)")
    body = read_manifest(manifest)
    study = Study(**body.study.model_dump())
    runs = [RunSpec(r.name, r.preset, r.seed, tuple(r.overrides)) for r in body.runs]
    return study, runs


# ----------------------------------------------------------------------------------------------- state


def run_state(run_dir: Path, study: Study) -> str:
    """finished, evaluate (trained, report missing), interrupted (a checkpoint to resume) or pending."""
    progress = runfolder.progress(run_dir)
    if progress != "trained":
        return progress
    if study.evaluate and not runfolder.report_file(runfolder.report_folder(run_dir)).is_file():
        return "evaluate"
    return "finished"


# ----------------------------------------------------------------------------------------------- running


def jvae_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "jvae", *args]


def _stop_with_parent(parent: int) -> Callable[[], None]:
    """For the child, before it runs: SIGTERM when the sweep dies, however it dies, so its runs checkpoint and
    stop instead of running on unwatched (Linux; elsewhere they run to their end). A sweep killed between the
    fork and the request has already gone, and no signal would ever come: that child leaves at once, before it
    can touch the run folder a rerun of the sweep is about to use."""

    def arm() -> None:
        try:
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:
            os._exit(EXIT_STOPPED)

    return arm


class Stopping:
    """The sweep's one stop request: set by the first SIGINT or SIGTERM, it is passed on once to every run
    in progress (which checkpoints and exits) and no further run starts. The runs live in sessions of their
    own, so a Ctrl-C at the terminal reaches them only through here, exactly once."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.children: set[subprocess.Popen[bytes]] = set()
        self.lock = threading.Lock()

    def request(self, *_: object) -> None:
        self.requested.set()
        with self.lock:
            for child in self.children:
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)

    def run(self, command: list[str], output: IO[str], env: dict[str, str]) -> int:
        with self.lock:
            if self.requested.is_set():
                return EXIT_STOPPED
            child = subprocess.Popen(
                command,
                stdout=output,
                stderr=output,
                env=env,
                preexec_fn=_stop_with_parent(os.getpid()),
                start_new_session=True,
            )
            self.children.add(child)
        try:
            return child.wait()
        finally:
            with self.lock:
                self.children.discard(child)


EXIT_STOPPED = 130
STOPPING = Stopping()


class SweepInterrupted(JvaeError):
    """The sweep stopped at the user's request; every run it touched can be resumed by running it again."""

    exit_code = EXIT_STOPPED


def _run_jvae(args: list[str], output: IO[str], env: dict[str, str]) -> int:
    """`jvae ARGS` in a child process that stops with the sweep, its output appended to `output`."""
    return STOPPING.run(jvae_command(args), output, env)


def _child_env(threads: int, gpu: str | None) -> dict[str, str]:
    """A run's environment: its share of the cores and, with several GPUs, its own GPU."""
    env = dict(os.environ)
    if threads:
        env["JVAE_THREADS"] = str(threads)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def run_one(
    spec: dict[str, Any], folder: str, definition: dict[str, Any], threads: int = 0, gpu: str | None = None
) -> dict[str, Any]:
    """Bring one run to finished: train (or resume), then evaluate; a plain function of plain values, so a
    Slurm job (submitit pickles it) runs exactly what a local process runs."""
    run = RunSpec(spec["name"], spec["preset"], spec["seed"], tuple(spec["overrides"]))
    study = Study(**definition)
    run_dir = Path(folder) / run.name
    env = _child_env(threads, gpu)
    if run_dir.is_dir() and not runfolder.wait_until_free(run_dir):
        return {"name": run.name, "started_as": "busy", "returncode": 1, "seconds": 0.0, "state": "busy"}
    state = run_state(run_dir, study)
    started = time.perf_counter()
    log = Path(folder) / "logs" / f"{run.name}.log"
    log.parent.mkdir(exist_ok=True)
    code = 0
    with open(log, "a", encoding="utf-8") as output:
        if state == "pending" and run_dir.exists():
            shutil.rmtree(run_dir)  # a failed start: nothing worth keeping
        if state in ("pending", "interrupted"):
            args = run.train_args(run_dir, resume=state == "interrupted")
            code = _run_jvae(args, output, env)
        if code == 0 and study.evaluate and run_state(run_dir, study) == "evaluate" and not stopped():
            chosen = [item for name in study.metrics for item in ("--metrics", name)]
            args = [
                "evaluate",
                str(runfolder.checkpoint(run_dir)),
                "--fast",
                "--seed",
                str(run.seed),
                *chosen,
            ]
            args += ["--out", str(runfolder.report_folder(run_dir))]
            code = _run_jvae(args, output, env)
    record: dict[str, Any] = {
        "name": run.name,
        "started_as": state,
        "returncode": code,
        "seconds": time.perf_counter() - started,
        "state": run_state(run_dir, study) if run_dir.is_dir() else "pending",
    }
    if run_dir.is_dir() and state != "finished":
        previous = _read_record(run_dir)
        record["seconds"] += previous.get("seconds", 0.0) if previous.get("state") != "pending" else 0.0
        write_text(runfolder.run_record(run_dir), json.dumps(record) + "\n")
    return record


def stack_groups(folder: Path, study: Study, todo: list[RunSpec], size: int) -> list[list[RunSpec]]:
    """The runs to do, as groups: runs not started yet that differ only in their seed and their `loss.*`
    values, `size` at most per group, train together as one stacked computation; every other run alone
    (a kind with a second network cannot stack; an interrupted run resumes alone, as it was saved)."""
    from jvae.runs.runplan import stackable

    groups: list[list[RunSpec]] = []
    by_setting: dict[tuple[str, tuple[str, ...]], list[RunSpec]] = {}
    for spec in todo:
        fresh = run_state(folder / spec.name, study) == "pending"
        if size > 1 and fresh:
            shared = tuple(text for text in spec.overrides if not text.strip().startswith("loss."))
            by_setting.setdefault((spec.preset, shared), []).append(spec)
        else:
            groups.append([spec])
    for (preset, _), specs in by_setting.items():
        try:
            stackable(
                [load_preset(preset, [*spec.overrides, f"train.seed={spec.seed}"])[1] for spec in specs]
            )
        except PresetError:
            groups += [[spec] for spec in specs]
            continue
        groups += [specs[i : i + size] for i in range(0, len(specs), size)]
    return groups


def run_group(
    specs: list[dict[str, Any]],
    folder: str,
    definition: dict[str, Any],
    threads: int = 0,
    gpu: str | None = None,
) -> list[dict[str, Any]]:
    """Bring a group of runs to finished: several new runs train as one stacked process (`jvae train
    --members FILE`, the members file of `runplan`), then each is evaluated; a plain function of plain values, like `run_one`, so a Slurm job
    runs exactly what a local process runs."""
    if len(specs) == 1:
        return [run_one(specs[0], folder, definition, threads, gpu)]
    runs = [RunSpec(s["name"], s["preset"], s["seed"], tuple(s["overrides"])) for s in specs]
    env = _child_env(threads, gpu)
    for run in runs:
        if (Path(folder) / run.name).exists():
            shutil.rmtree(Path(folder) / run.name)  # a failed start: nothing worth keeping
    first = runs[0]
    logs = Path(folder) / "logs"
    logs.mkdir(exist_ok=True)
    listing = logs / f"{first.name}.stack.json"
    runplan.write_members(listing, [(run.name, run.seed, list(run.overrides)) for run in runs])
    args = ["train", "--preset", first.preset, "--members", str(listing), "--out", folder]
    started = time.perf_counter()
    with open(logs / f"{first.name}.stack.log", "a", encoding="utf-8") as output:
        code = _run_jvae(args, output, env)
    share = (time.perf_counter() - started) / len(runs)
    records = []
    for run, spec in zip(runs, specs):
        run_dir = Path(folder) / run.name
        if code == 0 and run_dir.is_dir():  # trained: each is evaluated (and recorded) as a single run
            record = run_one(spec, folder, definition, threads, gpu)
            record.update(started_as="pending", seconds=record["seconds"] + share, stacked=len(runs))
        else:
            state = run_state(run_dir, Study(**definition)) if run_dir.is_dir() else "pending"
            record = {"name": run.name, "started_as": "pending", "returncode": code or 1, "seconds": share}
            record.update(state=state, stacked=len(runs))
        if run_dir.is_dir():
            write_text(runfolder.run_record(run_dir), json.dumps(record) + "\n")
        records.append(record)
    return records


def _read_record(run_dir: Path) -> dict[str, Any]:
    """The run's previous record; a missing or damaged one is replaced by the new record."""
    try:
        return read_run_record(runfolder.run_record(run_dir)).model_dump()
    except RunFileError:
        return {}


def cpu_share(jobs: int) -> int:
    """Threads for each of `jobs` runs: the cores divided among them, unless $JVAE_THREADS says how many
    (a sweep sharing the machine with other work: two threads on a core another process also uses wait
    on each other at every operation, here 40 times slower than one)."""
    chosen = os.environ.get(THREADS_ENV, "")
    if chosen.isdigit() and int(chosen) >= 1:
        return int(chosen)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)


def run_local(
    folder: Path,
    study: Study,
    runs: list[RunSpec],
    jobs: int,
    report: Callable[[dict[str, Any]], None],
    stack: int = 1,
) -> list[dict[str, Any]]:
    """Every unfinished run, `jobs` processes at a time (up to `stack` new runs of one setting in each, see
    `stack_groups`), each process given its share of the cores (and, with several GPUs, a GPU of its own)."""
    import torch

    todo = [spec for spec in runs if run_state(folder / spec.name, study) != "finished"]
    groups = stack_groups(folder, study, todo, stack)
    gpus = torch.cuda.device_count()
    threads = cpu_share(jobs)

    def work(index: int, group: list[RunSpec]) -> list[dict[str, Any]]:
        if stopped():
            return []
        gpu = str(index % gpus) if gpus > 1 else None
        results = run_group([asdict(spec) for spec in group], str(folder), study.definition(), threads, gpu)
        for result in results:
            report(result)
        return results

    STOPPING.requested.clear()
    signals = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    previous = {sig: signal.signal(sig, STOPPING.request) for sig in signals}
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = [result for results in pool.map(work, range(len(groups)), groups) for result in results]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopped():
        left = [spec.name for spec in runs if run_state(folder / spec.name, study) != "finished"]
        raise SweepInterrupted(
            f"interrupted: {len(left)} of {len(runs)} runs unfinished, each saved where it stopped; run the same "
            "command again to finish them"
        )
    return results


def stopped() -> bool:
    return STOPPING.requested.is_set()


@dataclass(frozen=True)
class SlurmSettings:
    partition: str | None
    time: str  # HH:MM:SS or minutes
    gpus_per_job: int
    cpus_per_job: int
    cluster: str = "slurm"  # "local": submitit's local executor, the same submission as processes here


def _minutes(text: str) -> int:
    parts = [int(p) for p in text.split(":")] if re.fullmatch(r"\d+(:\d+){0,2}", text) else None
    if not parts:
        raise UsageError(f"--time {text!r}: expected minutes or HH:MM:SS")
    if len(parts) == 1:
        return parts[0]
    hours, minutes, *seconds = parts
    return hours * 60 + minutes + (1 if seconds and seconds[0] else 0)


def run_slurm(
    folder: Path,
    study: Study,
    runs: list[RunSpec],
    settings: SlurmSettings,
    report: Callable[[dict[str, Any]], None],
    stack: int = 1,
) -> list[dict[str, Any]]:
    """The unfinished runs (grouped as `stack_groups` says) as one Slurm job array through submitit; waits
    for it, reporting each run."""
    try:
        import submitit
    except ImportError:
        raise UsageError('--slurm needs the slurm extra: pip install "jvae[slurm]"') from None
    todo = [spec for spec in runs if run_state(folder / spec.name, study) != "finished"]
    if not todo:
        return []
    groups = stack_groups(folder, study, todo, stack)
    executor = submitit.AutoExecutor(folder=str(folder / "slurm" / "%j"), cluster=settings.cluster)
    parameters: dict[str, Any] = {
        "timeout_min": _minutes(settings.time),
        "cpus_per_task": settings.cpus_per_job,
        "name": f"jvae-{folder.name}",
    }
    if settings.cluster == "slurm":
        parameters["slurm_array_parallelism"] = len(groups)
        if settings.partition:
            parameters["slurm_partition"] = settings.partition
        if settings.gpus_per_job:
            parameters["gpus_per_node"] = settings.gpus_per_job
    executor.update_parameters(**parameters)
    threads = settings.cpus_per_job
    jobs = executor.map_array(
        run_group,
        [[asdict(spec) for spec in group] for group in groups],
        [str(folder)] * len(groups),
        [study.definition()] * len(groups),
        [threads] * len(groups),
    )
    results = []
    for job, group in zip(jobs, groups):
        try:
            done = job.result()
        except Exception as exc:  # noqa: BLE001 - a job that died is reported, the others still collected
            error = str(exc).splitlines()[0][:200]
            done = [{"name": spec.name, "returncode": 1, "state": "failed", "error": error} for spec in group]
        for result in done:
            report(result)
        results += done
    return results
