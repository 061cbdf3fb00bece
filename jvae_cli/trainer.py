"""The training loop: preset in, run directory out (checkpoint, metrics log, traversal GIF).

It never prints: progress goes to callbacks (`jvae_cli.callbacks`), and an external stop request (the CLI's signal handler) ends
the loop after the current step with a checkpoint written. Everything random (initialisation, data order,
sampling noise) comes from the preset's seed and is saved in the checkpoint, so a resumed run continues the
exact sequence of an uninterrupted one on the same device.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, TypedDict

import torch

from jvae_cli.callbacks import Callback, CallbackList, RunInfo
from jvae_cli.checkpoint import Checkpoint, RunState, read_checkpoint
from jvae_cli.data import open_dataset
from jvae_cli.data.capabilities import skipped_files
from jvae_cli.data.sources import ImageSource
from jvae_cli.distributed import Cluster, any_rank, barrier, join, leave, mean_over_ranks
from jvae_cli.errors import JvaeError, PresetError, RunDirError
from jvae_cli.figures import write_ranked_traversal
from jvae_cli.files import appending, check_target, remove_temporaries, write_text
from jvae_cli.host_memory import pages_kept
from jvae_cli.kinds import kind_of
from jvae_cli.latents import measure_unit_kl
from jvae_cli.limits import STACK_MAX
from jvae_cli.losses import LossTerms
from jvae_cli.model import JointVAE
from jvae_cli.monitor import evaluate_now, held_out_source
from jvae_cli.presets import Preset, preset_to_toml
from jvae_cli.runlock import LOCK_FILE, RunLock
from jvae_cli.schedules import learning_rate, temperature, total_steps
from jvae_cli.steps import Mark, MemberState, PhaseTimer, Stepper
from jvae_cli.trackers import build_trackers, check_available

if TYPE_CHECKING:
    from jvae_cli.concurrent import ConcurrentSteps
    from jvae_cli.stacking import StackedStepper

CHECKPOINT = "ckpt.pt"
METRICS = "metrics.jsonl"
PRESET_FILE = "preset.toml"
TRAVERSAL = "traversals.gif"
TRAVERSAL_FRAMES = 10
TRAVERSAL_ENCODED = 4  # columns after the prior mode
STACK_FILE = "stack.json"  # a stack's folder: which run folders in it train together


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    total_steps: int
    interrupted: bool
    seconds: float
    images_per_sec: float
    traversal: Path | None
    main: bool = True  # False in the processes of a distributed run other than rank 0
    profile: dict[str, float] = field(default_factory=dict)  # seconds per phase, with profile=True
    steps_run: int = 0  # steps taken by this call (a resumed run started after 0)


class _Finished(TypedDict):
    """The TrainResult fields every way out of a finished loop shares, typed so they can be passed as **."""

    seconds: float
    images_per_sec: float
    main: bool
    profile: dict[str, float]
    steps_run: int


def parse_record(line: str) -> dict[str, Any] | None:
    """A metrics.jsonl line, or None for a line a crash cut short."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("step"), int) else None


def _trim_metrics(path: Path, last_step: int) -> None:
    """Drop log lines past the checkpoint being resumed, which a crash may have left behind."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(errors="replace").splitlines():
        record = parse_record(line)
        if record is not None and record["step"] <= last_step:
            kept.append(line)
    write_text(path, "".join(line + "\n" for line in kept))


class _Interval:
    """Sums of the loss terms since the last log line, kept on the device to avoid a host sync per step.

    They are saved with each checkpoint, so the line after a resume averages the same steps as it would
    have without the interruption.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.timed = 0  # steps taken by this process since the interval (or the resume) began
        self.sums: dict[str, torch.Tensor] = {}
        self.started = time.perf_counter()
        self.excluded = 0.0

    def add(self, **terms: torch.Tensor) -> None:
        for key, value in terms.items():
            value = value.detach()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.count += 1
        self.timed += 1

    def state(self) -> dict[str, Any]:
        return {"count": self.count, "sums": {key: value.cpu() for key, value in self.sums.items()}}

    def restore(self, saved: dict[str, Any], device: torch.device) -> None:
        self.count = int(saved["count"])
        self.sums = {key: value.to(device) for key, value in saved["sums"].items()}

    def means(self, sums: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """Interval means, of `sums` when given (the sums averaged over processes)."""
        return {key: (value / self.count).tolist() for key, value in (sums or self.sums).items()}

    def images_per_sec(self, batch_size: int) -> float:
        seconds = time.perf_counter() - self.started - self.excluded
        return self.timed * batch_size / seconds if seconds > 0 else 0.0


class _Finite:
    """Whether every loss so far was finite, tracked on the device (no host sync per step on a GPU) and read
    before anything is logged or saved, so NaN weights are never written as a good checkpoint."""

    def __init__(self, device: torch.device) -> None:
        self.bad = torch.zeros((), dtype=torch.bool, device=device)
        self.first = torch.zeros((), dtype=torch.long, device=device)
        self.every_step = device.type == "cpu"  # reading a CPU tensor costs nothing; a GPU read would wait

    def add(self, loss: torch.Tensor, step: int) -> None:
        now = ~torch.isfinite(loss.detach())
        self.first = torch.where(now & ~self.bad, step, self.first)
        self.bad = self.bad | now

    def diverged_at(self) -> int | None:
        return int(self.first) if bool(self.bad) else None


def _checkpoint(
    preset_name: str,
    preset: Preset,
    saved: MemberState,
    step: int,
    total: int,
    unit_kl: dict | None,
    interval: dict[str, Any] | None = None,
) -> Checkpoint:
    checkpoint = Checkpoint.new(preset_name, preset, saved.weights, step)
    checkpoint.unit_kl = unit_kl
    checkpoint.state = RunState(
        optimizer=saved.optimizer,
        rng={
            "torch": torch.get_rng_state(),
            "noise": saved.noise.get_state().cpu(),
            "device": saved.noise.device.type,
        },
        total_steps=total,
        critic=saved.critic,
        interval=interval,
    )
    return checkpoint


@dataclass
class _Member:
    """One run the loop trains (a single run, or one model of a stack): its own folder, preset, callbacks
    and what it has logged and saved."""

    index: int
    preset: Preset
    run_dir: Path
    emit: CallbackList
    resumed: Checkpoint | None
    interval: _Interval
    finite: _Finite
    label: str = ""  # names the run in errors when several train together
    saved_step: int | None = None
    log: IO[str] | None = None
    run: RunInfo | None = None

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / CHECKPOINT


def train(
    preset: Preset,
    preset_name: str,
    run_dir: Path,
    *,
    device: str = "auto",
    data_path: str | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    should_stop: Callable[[], bool] | None = None,
    profile: bool = False,
) -> TrainResult:
    """Train `preset` into `run_dir`, or continue the run there when `resume` is set.

    `callbacks` (and the trackers `train.track` names) hear of the run's progress on the main process.
    Started by torchrun with several processes, it trains with DistributedDataParallel (see `distributed`).
    """
    for name in preset.train.track:
        check_available(name)  # a missing extra is refused before anything starts
    cluster, torch_device = join(device)
    run_dir = Path(run_dir)
    try:
        check_run_dir(run_dir, resume)  # refused before anything is created; checked again under the lock
        created = not run_dir.exists()
        with pages_kept(), ExitStack() as held:
            if cluster.main and (run_dir.is_dir() or not resume):  # rank 0 holds it for every process
                held.enter_context(RunLock(run_dir))
                if resume:
                    remove_temporaries(run_dir)  # left by a write the last holder was killed in
            emit = CallbackList([])
            if cluster.main:
                emit = CallbackList([*callbacks, *build_trackers(preset.train.track, run_dir)])
                held.callback(emit.close)
            try:
                return _train(
                    preset,
                    preset_name,
                    run_dir,
                    cluster,
                    torch_device,
                    data_path,
                    resume,
                    emit,
                    should_stop,
                    profile,
                )
            except BaseException:
                if cluster.main and created and run_dir.is_dir():
                    _remove_if_only_the_lock(run_dir)
                raise
    finally:
        leave(cluster)


def check_processes(preset: Preset, world: int) -> None:
    """Refuse a preset that `world` processes cannot train together."""
    if world <= 1:
        return
    if not kind_of(preset.loss).multiprocess:
        raise PresetError(f"{preset.loss.kind} trains a second network and runs in one process only")
    if preset.train.batch_size % world:
        raise PresetError(
            f"train.batch_size {preset.train.batch_size} does not split evenly over {world} processes"
        )


def check_run_dir(run_dir: Path, resume: bool) -> Checkpoint | None:
    ckpt_path = run_dir / CHECKPOINT
    if run_dir.is_dir():  # refused now rather than after hours of training
        for name in (CHECKPOINT, METRICS, PRESET_FILE, TRAVERSAL):
            check_target(run_dir / name)
    if resume:
        if not ckpt_path.is_file():
            raise RunDirError(f"nothing to resume: {ckpt_path} does not exist")
        checkpoint = read_checkpoint(ckpt_path)
        if checkpoint.state is None:
            origin = (checkpoint.imported or {}).get("source", "another program")
            raise RunDirError(
                f"{ckpt_path} was imported from {origin} and holds no training state (optimiser, data order) "
                "to resume"
            )
        return checkpoint
    if ckpt_path.exists():
        raise RunDirError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick --out")
    if run_dir.exists() and (
        not run_dir.is_dir() or any(entry.name != LOCK_FILE for entry in run_dir.iterdir())
    ):
        raise RunDirError(f"{run_dir} exists and is not an empty folder; pick a new or empty --out")
    return None


def _remove_if_only_the_lock(run_dir: Path) -> None:
    """A run that failed before writing anything leaves no folder behind, as before locking existed."""
    entries = list(run_dir.iterdir())
    if [entry.name for entry in entries] == [LOCK_FILE]:
        entries[0].unlink(missing_ok=True)
        run_dir.rmdir()


def read_stack(stack_dir: Path) -> list[str]:
    """The member folder names of the stack in `stack_dir`, from its stack.json."""
    from jvae_cli.runfiles import RunFileError, read_json

    path = stack_dir / STACK_FILE
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


def is_stack(folder: Path) -> bool:
    return (folder / STACK_FILE).is_file() and not (folder / CHECKPOINT).exists()


def train_stack(
    members: Sequence[tuple[str, Preset]],
    preset_name: str,
    stack_dir: Path,
    *,
    device: str = "auto",
    data_path: str | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    should_stop: Callable[[], bool] | None = None,
    profile: bool = False,
    within: bool = False,
    engine: str | None = None,
) -> list[TrainResult]:
    """Train several models of one preset as one stacked computation (`jvae_cli.stacking`), each into its own
    run folder `stack_dir/NAME`, written exactly as a single run writes it (so each can also be resumed,
    evaluated or traversed alone). `members` are (folder name, preset) pairs that differ only in train.seed
    and loss values; with `resume`, the stack in `stack_dir` continues from its members' checkpoints.

    `callbacks` hear the first member's progress; each member's trackers (`train.track`) hear their own.
    `within`: `stack_dir` is an existing folder holding other things (a study's): only the members' own
    folders must be new, and the stack file is named after the first (stack-NAME.json). `engine`: how the
    models compute (`stacking.stack_steps`; by default the fastest where they run).
    """
    from jvae_cli.stacking import stack_steps, stackable

    if len(members) > STACK_MAX:  # before any folder: each member holds a lock and a model
        raise PresetError(f"a stack of {len(members)} models; a stack trains at most {STACK_MAX}")
    presets = [preset for _, preset in members]
    names = [name for name, _ in members]
    stackable(presets)
    for name in presets[0].train.track:
        check_available(name)
    cluster, torch_device = join(device)
    try:
        if cluster.active:
            raise PresetError("stacked models train in one process; leave out torchrun / --nproc")
        stack_dir = Path(stack_dir)
        stack_file = stack_dir / (f"stack-{names[0]}.json" if within else STACK_FILE)
        if not resume and not within:
            check_run_dir(stack_dir, resume=False)
        run_dirs = [stack_dir / name for name in names]
        resumed = [check_run_dir(run_dir, resume) for run_dir in run_dirs]
        created = not stack_dir.exists()
        with pages_kept(), ExitStack() as held:
            try:
                for run_dir in run_dirs:
                    held.enter_context(RunLock(run_dir))
                    if resume:
                        remove_temporaries(run_dir)
                emits = [
                    CallbackList([*(callbacks if k == 0 else ()), *build_trackers(p.train.track, run_dir)])
                    for k, (p, run_dir) in enumerate(zip(presets, run_dirs))
                ]
                for emit in emits:
                    held.callback(emit.close)
                write_text(stack_file, json.dumps({"preset": preset_name, "members": names}) + "\n")
                source, total = _open_source(presets[0], data_path)
                stepper = stack_steps(presets, source, torch_device, engine)
                held.callback(stepper.close)
                step = _restore_stack(stepper, resumed, run_dirs, total, torch_device, emits)
                group = [
                    _Member(k, p, run_dir, emit, saved, _Interval(), _Finite(torch_device), f"{run_dir}: ")
                    for k, (p, run_dir, emit, saved) in enumerate(zip(presets, run_dirs, emits, resumed))
                ]
                return _loop(
                    stepper,
                    group,
                    preset_name,
                    source,
                    total,
                    step,
                    cluster,
                    torch_device,
                    f"{torch_device}",
                    should_stop,
                    profile,
                    data_path,
                )
            except BaseException:
                if not resume:
                    for run_dir in run_dirs:
                        if run_dir.is_dir():
                            _remove_if_only_the_lock(run_dir)
                    if not any(run_dir.exists() for run_dir in run_dirs):
                        stack_file.unlink(missing_ok=True)
                if created and stack_dir.is_dir() and not any(stack_dir.iterdir()):
                    stack_dir.rmdir()
                raise
    finally:
        leave(cluster)


def _restore_stack(
    stepper: StackedStepper | ConcurrentSteps,
    resumed: list[Checkpoint | None],
    run_dirs: list[Path],
    total: int,
    device: torch.device,
    emits: list[CallbackList],
) -> int:
    """Load every member's checkpoint into the stack; the step they continue from (0 for a new stack)."""
    saved = [checkpoint for checkpoint in resumed if checkpoint is not None and checkpoint.state is not None]
    if not saved:
        return 0
    steps = {checkpoint.step for checkpoint in saved}
    if len(steps) > 1:
        at = ", ".join(f"{d.name} at step {c.step}" for d, c in zip(run_dirs, saved))
        raise RunDirError(
            f"the stack's runs stopped at different steps ({at}); resume each folder on its own "
            "(jvae train --resume FOLDER)"
        )
    step = _resumed_step(saved[0], run_dirs[0] / CHECKPOINT, total)
    states = []
    for checkpoint, emit, preset in zip(saved, emits, stepper.presets):
        state = checkpoint.state
        assert state is not None
        noise = _noise_state(state, device)
        if noise is None:
            emit.on_status(step, _reseeded(preset, step, state, device))
        states.append((checkpoint.model, state.optimizer, noise))
    stepper.restore(states)
    for member, (_, _, noise) in enumerate(states):
        if noise is None:
            stepper.noises[member].manual_seed(stepper.presets[member].train.seed + 1 + step)
    torch.set_rng_state(saved[0].state.rng["torch"])  # type: ignore[union-attr]
    return step


class _Steps(Protocol):
    """What the loop asks of the steps it drives: `steps.Stepper` (one run) or `stacking.stack_steps`."""

    count: int
    engine: str
    steps_per_epoch: int
    bf16: bool

    def step_members(
        self, index: int, mark: Mark | None = None
    ) -> list[tuple[LossTerms, dict[str, Any]]]: ...

    def member_model(self, member: int) -> JointVAE: ...

    def member_state(self, member: int) -> MemberState: ...


def _open_source(preset: Preset, data_path: str | None) -> tuple[ImageSource, int]:
    source = open_dataset(preset.data, data_path)
    if len(source) < preset.train.batch_size:
        raise JvaeError(
            f"the dataset has {len(source)} images, fewer than one batch of {preset.train.batch_size}"
        )
    return source, total_steps(preset, len(source))


def _resumed_step(resumed: Checkpoint, path: Path, total: int) -> int:
    if total < resumed.step:
        raise PresetError(
            f"{path} is at step {resumed.step}; a run of {total} steps would end before it (set "
            f"train.steps to at least {resumed.step})"
        )
    return resumed.step


def _noise_state(saved: RunState, device: torch.device) -> torch.Tensor | None:
    """The saved noise generator state, or None where it was saved on another device type (generator
    states do not move between device types)."""
    return saved.rng["noise"] if saved.rng.get("device", "cpu") == device.type else None


def _reseeded(preset: Preset, step: int, saved: RunState, device: torch.device) -> str:
    return f"resuming a {saved.rng.get('device', 'cpu')} run on {device.type}: sampling noise is reseeded from the step"


def _train(
    preset: Preset,
    preset_name: str,
    run_dir: Path,
    cluster: Cluster,
    torch_device: torch.device,
    data_path: str | None,
    resume: bool,
    emit: CallbackList,
    should_stop: Callable[[], bool] | None,
    profile: bool,
) -> TrainResult:
    resumed = check_run_dir(run_dir, resume)
    barrier(cluster)  # every process has checked the folder before rank 0 writes into it
    check_processes(preset, cluster.world)
    source, total = _open_source(preset, data_path)

    stepper = Stepper.create(preset, source, torch_device, cluster)
    member = _Member(0, preset, run_dir, emit, resumed, _Interval(), _Finite(torch_device))
    step = 0
    if resumed is not None and resumed.state is not None:
        saved = resumed.state
        step = _resumed_step(resumed, member.ckpt_path, total)
        noise = _noise_state(saved, torch_device)
        stepper.restore(resumed.model, saved.optimizer, noise)
        if stepper.critic is not None:
            if saved.critic is None:
                raise RunDirError(f"{member.ckpt_path} has no {preset.loss.kind} critic state to resume")
            stepper.critic.load_state_dict(saved.critic)
        torch.set_rng_state(saved.rng["torch"])
        if noise is None:
            stepper.noise.manual_seed(preset.train.seed + 1 + step)
            emit.on_status(step, _reseeded(preset, step, saved, torch_device))
    where = f"{torch_device}" + (f" x {cluster.world} processes" if cluster.active else "")
    return _loop(
        stepper,
        [member],
        preset_name,
        source,
        total,
        step,
        cluster,
        torch_device,
        where,
        should_stop,
        profile,
        data_path,
    )[0]


def _loop(
    stepper: _Steps,
    members: list[_Member],
    preset_name: str,
    source: ImageSource,
    total: int,
    start_step: int,
    cluster: Cluster,
    torch_device: torch.device,
    where: str,
    should_stop: Callable[[], bool] | None,
    profile: bool,
    data_path: str | None,
) -> list[TrainResult]:
    """Train every member from `start_step` to `total`: log lines, evaluations, checkpoints and the final
    unit KL and traversal of each in its own folder."""
    stop = should_stop or (lambda: False)
    preset = members[0].preset  # the members share every setting the loop reads
    evaluating = preset.train.eval_every is not None and cluster.main
    held_out = held_out_source(preset, data_path) if evaluating else None
    batch_size = preset.train.batch_size
    step = start_step
    for member in members:
        if member.resumed is not None:
            member.saved_step = member.resumed.step
            if cluster.main:
                _trim_metrics(member.run_dir / METRICS, step)
        if cluster.main:
            member.run_dir.mkdir(parents=True, exist_ok=True)
            write_text(member.run_dir / PRESET_FILE, preset_to_toml(member.preset))

    def check_finite(member: _Member, everywhere: bool = True) -> None:
        """Raise when a loss since the start was not finite; `everywhere`: agree with the other processes."""
        diverged = member.finite.diverged_at()
        if everywhere and cluster.active:
            if not any_rank(cluster, diverged is not None, torch_device):
                return
            diverged = diverged or step
        if diverged is None:
            return
        last = (
            f"the last good checkpoint is {member.ckpt_path} (step {member.saved_step})"
            if member.saved_step is not None
            else "no checkpoint was written"
        )
        raise JvaeError(
            f"{member.label}training diverged at step {diverged} (the loss is not finite); try a lower "
            f"train.lr; {last}"
        )

    def save(
        member: _Member, unit_kl: dict | None = None, everywhere: bool = True, periodic: bool = False
    ) -> None:
        """Write the member's checkpoint (rank 0); `everywhere`: every process calls this at the same step;
        `periodic`: a `checkpoint_every` one, which the history keeps."""
        check_finite(member, everywhere)
        if not cluster.main:
            return
        interval = member.interval
        running = interval.state() if interval.count else None
        saved = stepper.member_state(member.index)
        checkpoint = _checkpoint(preset_name, member.preset, saved, step, total, unit_kl, running)
        checkpoint.save(member.ckpt_path)
        member.saved_step = step
        member.emit.on_checkpoint(step, member.ckpt_path)
        if periodic and preset.train.keep_checkpoints:
            kept = member.run_dir / f"ckpt-{step:06d}.pt"
            checkpoint.save(kept)
            member.emit.on_checkpoint(step, kept)
            for old in sorted(member.run_dir.glob("ckpt-*.pt"))[: -preset.train.keep_checkpoints]:
                old.unlink(missing_ok=True)

    def save_all(everywhere: bool = True, periodic: bool = False) -> None:
        for member in members:
            check_finite(member, everywhere)  # no member is written when any has diverged
        for member in members:
            save(member, everywhere=everywhere, periodic=periodic)

    precision = "bf16 autocast" if stepper.bf16 else "fp32"
    stacked = f", one of {len(members)} stacked models ({stepper.engine})" if len(members) > 1 else ""
    description = f"{source.description} on {where} ({precision}{stacked})"
    skipped = skipped_files(source)
    for member in members:
        member.run = RunInfo(
            member.run_dir, preset_name, member.preset.model_dump(mode="json"), total, step, description
        )
        member.emit.on_start(member.run)
        if skipped:
            listed = "; ".join(str(path) for path, _ in skipped[:5]) + ("; ..." if len(skipped) > 5 else "")
            member.emit.on_status(step, f"left out {len(skipped)} unreadable image(s): {listed}")
        resumed = member.resumed
        if resumed is not None and resumed.state is not None and resumed.state.interval is not None:
            member.interval.restore(resumed.state.interval, torch_device)
    timer = PhaseTimer(torch_device) if profile else None
    started = time.perf_counter()
    interrupted = False
    for k in range(len(members)):
        stepper.member_model(k).train()
    with ExitStack() as closing:
        if cluster.main:
            for member in members:
                member.log = closing.enter_context(appending(member.run_dir / METRICS))
        while step < total:
            # Under DDP every process must stop at the same step, so the stop request is shared at log lines.
            boundary = not cluster.active or step % preset.train.log_every == 0
            if boundary and any_rank(cluster, stop(), torch_device):
                interrupted = True
                break
            if timer is not None:
                timer.restart()
            results = stepper.step_members(step, timer)
            step += 1
            for member, (terms, extra) in zip(members, results):
                member.interval.add(
                    loss=terms.loss, recon=terms.recon, kl_cont=terms.kl_cont, kl_disc=terms.kl_disc, **extra
                )
                member.finite.add(terms.loss, step)
                if member.finite.every_step and not cluster.active:
                    check_finite(member, everywhere=False)
            if step % preset.train.log_every == 0 or step == total:
                for member, (terms, _) in zip(members, results):
                    check_finite(member)
                    _log_line(member, terms, step, stepper.steps_per_epoch, total, cluster)
            every = preset.train.eval_every
            if every is not None and step % every == 0 and cluster.main:
                paused = time.perf_counter()
                for member in members:
                    check_finite(member, everywhere=False)
                    model = stepper.member_model(member.index)
                    evaluation, pictures = evaluate_now(
                        model, member.preset, source, torch_device, step, member.run_dir, held_out
                    )
                    if member.log is not None:
                        member.log.write(json.dumps(evaluation) + "\n")
                        member.log.flush()
                    member.emit.on_evaluation(step, evaluation, pictures)
                    model.train()
                for member in members:
                    member.interval.excluded += time.perf_counter() - paused
            if step % preset.train.checkpoint_every == 0 and step < total:
                paused = time.perf_counter()
                save_all(periodic=True)
                for member in members:
                    member.interval.excluded += time.perf_counter() - paused
            if timer is not None:
                timer("logging")

    seconds = time.perf_counter() - started
    images_per_sec = (step - start_step) * batch_size / seconds if seconds > 0 else 0.0
    phases = dict(timer.seconds) if timer is not None else {}
    finished: _Finished = {
        "seconds": seconds,
        "images_per_sec": images_per_sec,
        "main": cluster.main,
        "profile": phases,
        "steps_run": step - start_step,
    }

    def ended(member: _Member, stopped: bool, traversal: Path | None = None) -> TrainResult:
        assert member.run is not None
        member.emit.on_end(member.run, step, stopped)
        return TrainResult(member.run_dir, step, total, stopped, traversal=traversal, **finished)

    if interrupted:
        save_all()
        return [ended(member, True) for member in members]
    for member in members:
        check_finite(member)  # the last steps, on every process, before rank 0 goes on alone
    if not cluster.main:
        return [ended(member, False) for member in members]
    # A stop request that arrives with the last step or during one run's final figures ends the others
    # with their checkpoints, without their figures.
    return [_finish(member, step, stepper, source, torch_device, stop, save, ended) for member in members]


def _log_line(
    member: _Member, terms: LossTerms, step: int, steps_per_epoch: int, total: int, cluster: Cluster
) -> None:
    """The member's metrics.jsonl line at `step`: interval means of every term and where the schedules are."""
    preset, interval = member.preset, member.interval
    record = {
        "step": step,
        "epoch": step / steps_per_epoch,
        **interval.means(mean_over_ranks(cluster, interval.sums)),
    }
    record.update(
        capacity_cont=terms.capacity_cont,
        capacity_disc=terms.capacity_disc,
        lr=learning_rate(preset.train, step, total),
        temperature=temperature(preset.model, step),
        images_per_sec=round(interval.images_per_sec(preset.train.batch_size), 1),
    )
    if member.log is not None:
        member.log.write(json.dumps(record) + "\n")
        member.log.flush()
    member.emit.on_log(step, record)
    interval.reset()


def _finish(
    member: _Member,
    step: int,
    stepper: _Steps,
    source: ImageSource,
    device: torch.device,
    stop: Callable[[], bool],
    save: Callable[..., None],
    ended: Callable[..., TrainResult],
) -> TrainResult:
    """The end of a finished run: unit KL measured and saved with the checkpoint, then the traversal GIF."""
    if stop():
        save(member, everywhere=False)
        return ended(member, True)
    model = stepper.member_model(member.index)
    member.emit.on_status(step, "measuring unit KL and drawing traversals")
    kl = measure_unit_kl(model, source, device, seed=member.preset.train.seed)
    save(member, kl.as_dict(), everywhere=False)
    if stop():
        return ended(member, True)
    traversal = write_ranked_traversal(
        model,
        source,
        device,
        kl,
        member.run_dir / TRAVERSAL,
        member.preset.train.seed,
        frames=TRAVERSAL_FRAMES,
        encoded=TRAVERSAL_ENCODED,
        duration_ms=120,
    )
    return ended(member, stop(), traversal)
