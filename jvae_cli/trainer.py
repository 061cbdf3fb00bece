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
from typing import Any, TypedDict

import torch

from jvae_cli.callbacks import Callback, CallbackList, RunInfo
from jvae_cli.checkpoint import Checkpoint, RunState, read_checkpoint
from jvae_cli.data import open_dataset
from jvae_cli.data.capabilities import skipped_files
from jvae_cli.distributed import Cluster, any_rank, barrier, join, leave, mean_over_ranks
from jvae_cli.errors import JvaeError, PresetError, RunDirError
from jvae_cli.figures import write_ranked_traversal
from jvae_cli.files import appending, check_target, remove_temporaries, write_text
from jvae_cli.host_memory import pages_kept
from jvae_cli.kinds import kind_of
from jvae_cli.latents import measure_unit_kl
from jvae_cli.monitor import evaluate_now
from jvae_cli.presets import Preset, preset_to_toml
from jvae_cli.runlock import LOCK_FILE, RunLock
from jvae_cli.schedules import learning_rate, temperature, total_steps
from jvae_cli.steps import PhaseTimer, Stepper
from jvae_cli.trackers import build_trackers, check_available

CHECKPOINT = "ckpt.pt"
METRICS = "metrics.jsonl"
PRESET_FILE = "preset.toml"
TRAVERSAL = "traversals.gif"
TRAVERSAL_FRAMES = 10
TRAVERSAL_ENCODED = 4  # columns after the prior mode


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
    except json.JSONDecodeError:
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


@dataclass
class _State:
    stepper: Stepper  # the model, optimizer, noise generator and critic being trained
    step: int


def _checkpoint(
    preset_name: str,
    preset: Preset,
    state: _State,
    total: int,
    unit_kl: dict | None,
    interval: dict[str, Any] | None = None,
) -> Checkpoint:
    stepper = state.stepper
    weights = {k: v.detach().cpu() for k, v in stepper.model.state_dict().items()}
    checkpoint = Checkpoint.new(preset_name, preset, weights, state.step)
    checkpoint.unit_kl = unit_kl
    checkpoint.state = RunState(
        optimizer=stepper.optimizer.state_dict(),
        rng={
            "torch": torch.get_rng_state(),
            "noise": stepper.noise.get_state().cpu(),
            "device": stepper.noise.device.type,
        },
        total_steps=total,
        critic=stepper.critic.state_dict() if stepper.critic is not None else None,
        interval=interval,
    )
    return checkpoint


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
    stop = should_stop or (lambda: False)
    ckpt_path = run_dir / CHECKPOINT
    resumed = check_run_dir(run_dir, resume)
    barrier(cluster)  # every process has checked the folder before rank 0 writes into it
    batch_size = preset.train.batch_size
    check_processes(preset, cluster.world)

    source = open_dataset(preset.data, data_path)
    if len(source) < batch_size:
        raise JvaeError(f"the dataset has {len(source)} images, fewer than one batch of {batch_size}")
    total = total_steps(preset, len(source))

    stepper = Stepper.create(preset, source, torch_device, cluster)
    model, noise, bf16 = stepper.model, stepper.noise, stepper.bf16
    state = _State(stepper, step=0)
    if resumed is not None and resumed.state is not None:
        saved = resumed.state
        model.load_state_dict(resumed.model)
        stepper.optimizer.load_state_dict(saved.optimizer)
        if stepper.critic is not None:
            if saved.critic is None:
                raise RunDirError(f"{ckpt_path} has no {preset.loss.kind} critic state to resume")
            stepper.critic.load_state_dict(saved.critic)
        torch.set_rng_state(saved.rng["torch"])
        state.step = resumed.step
        saved_on = saved.rng.get("device", "cpu")
        if saved_on == torch_device.type:
            noise.set_state(saved.rng["noise"])
        else:  # generator states do not move between device types; continue from a seed tied to the step
            noise.manual_seed(preset.train.seed + 1 + state.step)
            message = (
                f"resuming a {saved_on} run on {torch_device.type}: sampling noise is reseeded from the step"
            )
            emit.on_status(state.step, message)
        if total < state.step:
            raise PresetError(
                f"{ckpt_path} is at step {state.step}; a run of {total} steps would end before it (set "
                f"train.steps to at least {state.step})"
            )
        if cluster.main:
            _trim_metrics(run_dir / METRICS, state.step)
    if cluster.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / PRESET_FILE, preset_to_toml(preset))

    interval = _Interval()
    finite = _Finite(torch_device)
    saved_step = resumed.step if resumed is not None else None

    def check_finite(everywhere: bool = True) -> None:
        """Raise when a loss since the start was not finite; `everywhere`: agree with the other processes."""
        diverged = finite.diverged_at()
        if everywhere and cluster.active:
            if not any_rank(cluster, diverged is not None, torch_device):
                return
            diverged = diverged or state.step
        if diverged is None:
            return
        last = (
            f"the last good checkpoint is {ckpt_path} (step {saved_step})"
            if saved_step is not None
            else "no checkpoint was written"
        )
        raise JvaeError(
            f"training diverged at step {diverged} (the loss is not finite); try a lower train.lr; {last}"
        )

    def save(unit_kl: dict | None = None, everywhere: bool = True, periodic: bool = False) -> None:
        """Write the checkpoint (rank 0); `everywhere`: every process calls this at the same step;
        `periodic`: a `checkpoint_every` one, which the history keeps."""
        nonlocal saved_step
        check_finite(everywhere)
        if cluster.main:
            running = interval.state() if interval.count else None
            checkpoint = _checkpoint(preset_name, preset, state, total, unit_kl, running)
            checkpoint.save(ckpt_path)
            saved_step = state.step
            emit.on_checkpoint(state.step, ckpt_path)
            if periodic and preset.train.keep_checkpoints:
                kept = run_dir / f"ckpt-{state.step:06d}.pt"
                checkpoint.save(kept)
                emit.on_checkpoint(state.step, kept)
                for old in sorted(run_dir.glob("ckpt-*.pt"))[: -preset.train.keep_checkpoints]:
                    old.unlink(missing_ok=True)

    where = f"{torch_device}" + (f" x {cluster.world} processes" if cluster.active else "")
    precision = "bf16 autocast" if bf16 else "fp32"
    description = f"{source.description} on {where} ({precision})"
    run = RunInfo(run_dir, preset_name, preset.model_dump(mode="json"), total, state.step, description)
    emit.on_start(run)
    skipped = skipped_files(source)
    if skipped:
        listed = "; ".join(str(path) for path, _ in skipped[:5]) + ("; ..." if len(skipped) > 5 else "")
        emit.on_status(state.step, f"left out {len(skipped)} unreadable image(s): {listed}")
    if resumed is not None and resumed.state is not None and resumed.state.interval is not None:
        interval.restore(resumed.state.interval, torch_device)
    timer = PhaseTimer(torch_device) if profile else None
    started = time.perf_counter()
    start_step = state.step
    interrupted = False
    model.train()
    with ExitStack() as closing:
        log = closing.enter_context(appending(run_dir / METRICS)) if cluster.main else None
        while state.step < total:
            # Under DDP every process must stop at the same step, so the stop request is shared at log lines.
            boundary = not cluster.active or state.step % preset.train.log_every == 0
            if boundary and any_rank(cluster, stop(), torch_device):
                interrupted = True
                break
            if timer is not None:
                timer.restart()
            terms, extra = stepper(state.step, timer)
            state.step += 1
            interval.add(
                loss=terms.loss, recon=terms.recon, kl_cont=terms.kl_cont, kl_disc=terms.kl_disc, **extra
            )
            finite.add(terms.loss, state.step)
            if finite.every_step and not cluster.active:
                check_finite(everywhere=False)
            if state.step % preset.train.log_every == 0 or state.step == total:
                check_finite()
                record = {
                    "step": state.step,
                    "epoch": state.step / stepper.steps_per_epoch,
                    **interval.means(mean_over_ranks(cluster, interval.sums)),
                }
                record.update(
                    capacity_cont=terms.capacity_cont,
                    capacity_disc=terms.capacity_disc,
                    lr=learning_rate(preset.train, state.step, total),
                    temperature=temperature(preset.model, state.step),
                    images_per_sec=round(interval.images_per_sec(batch_size), 1),
                )
                if log is not None:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                emit.on_log(state.step, record)
                interval.reset()
            every = preset.train.eval_every
            if every is not None and state.step % every == 0 and cluster.main and log is not None:
                paused = time.perf_counter()
                check_finite(everywhere=False)
                evaluation, pictures = evaluate_now(model, preset, source, torch_device, state.step, run_dir)
                log.write(json.dumps(evaluation) + "\n")
                log.flush()
                emit.on_evaluation(state.step, evaluation, pictures)
                interval.excluded += time.perf_counter() - paused
            if state.step % preset.train.checkpoint_every == 0 and state.step < total:
                paused = time.perf_counter()
                save(periodic=True)
                interval.excluded += time.perf_counter() - paused
            if timer is not None:
                timer("logging")

    seconds = time.perf_counter() - started
    images_per_sec = (state.step - start_step) * batch_size / seconds if seconds > 0 else 0.0
    phases = dict(timer.seconds) if timer is not None else {}
    finished: _Finished = {
        "seconds": seconds,
        "images_per_sec": images_per_sec,
        "main": cluster.main,
        "profile": phases,
        "steps_run": state.step - start_step,
    }

    def ended(stopped: bool, traversal: Path | None = None) -> TrainResult:
        emit.on_end(run, state.step, stopped)
        return TrainResult(run_dir, state.step, total, stopped, traversal=traversal, **finished)

    if interrupted:
        save()
        return ended(True)
    check_finite()  # the last steps, on every process, before rank 0 goes on alone
    if not cluster.main:
        return ended(False)
    if stop():  # a stop request that arrived with the last step: the checkpoint, without the final figures
        save(everywhere=False)
        return ended(True)
    emit.on_status(state.step, "measuring unit KL and drawing traversals")
    kl = measure_unit_kl(model, source, torch_device, seed=preset.train.seed)
    save(kl.as_dict(), everywhere=False)
    if stop():
        return ended(True)
    traversal = write_ranked_traversal(
        model,
        source,
        torch_device,
        kl,
        run_dir / TRAVERSAL,
        preset.train.seed,
        frames=TRAVERSAL_FRAMES,
        encoded=TRAVERSAL_ENCODED,
        duration_ms=120,
    )
    return ended(stop(), traversal)
