"""Training: a run plan in (`runplan`), run folders out (checkpoint, metrics log, traversal GIF).

One entry point, `train_plan`, trains a single run and a stack of runs alike (a single run is a stack of
one): a `RunContext` holds the folders' locks, the callbacks and trackers and cleans up after a failed
start; `restore` continues every run from its checkpoint; the loop (`training_loop`) steps and takes the
periodic actions; each run's `RunWriter` writes its folder. `train` and `train_stack` are shorthands.

It never prints: progress goes to callbacks (`jvae.base.callbacks`), and an external stop request (the CLI's
signal handler) ends the loop after the current step with a checkpoint written. Everything random
(initialisation, data order, sampling noise) comes from the preset's seed and is saved in the checkpoint, so
a resumed run continues the exact sequence of an uninterrupted one on the same device.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import torch

from jvae.base.callbacks import Callback, CallbackList, RunInfo
from jvae.base.devices import THREADS_ENV, precision_label
from jvae.base.errors import JvaeError, PresetError, RunDirError
from jvae.base.files import remove_temporaries
from jvae.base.host_memory import pages_kept
from jvae.data import open_dataset
from jvae.data.capabilities import skipped_files
from jvae.data.sources import ImageSource
from jvae.kinds import kind_of
from jvae.modeling.checkpoint import Checkpoint, RunState
from jvae.modeling.presets import Preset, with_seed
from jvae.modeling.schedules import total_steps
from jvae.runs import runfolder, runplan
from jvae.runs.runplan import RunPlan
from jvae.trackers import build_trackers, check_available
from jvae.training.collapse import check_step, next_seed, put_attempt_aside
from jvae.training.distributed import Cluster, barrier, join, leave
from jvae.training.monitor import held_out_source
from jvae.training.run_writer import RunWriter, Timing, TrainResult
from jvae.training.steps import PhaseTimer, Resumed, Stepper, Steps
from jvae.training.training_loop import Loop, periodic_actions, save_all

__all__ = ["RunContext", "TrainResult", "check_processes", "restore", "train", "train_plan", "train_stack"]


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
    """Train `preset` into `run_dir`, or continue the run there when `resume` is set (`train_plan` of a
    plan of one). Started by torchrun with several processes, it trains with DistributedDataParallel."""
    plan = runplan.single(preset_name, preset, run_dir, resume)
    return train_plan(
        plan,
        device=device,
        data_path=data_path,
        callbacks=callbacks,
        should_stop=should_stop,
        profile=profile,
    )[0]


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
    """Train several models of one preset as one stacked computation (`jvae.training.stacking`), each into its own
    run folder `stack_dir/NAME`, written exactly as a single run writes it (see `runplan.stack`)."""
    plan = runplan.stack(list(members), preset_name, stack_dir, resume, within)
    return train_plan(
        plan,
        device=device,
        data_path=data_path,
        callbacks=callbacks,
        should_stop=should_stop,
        profile=profile,
        engine=engine,
    )


def train_plan(
    plan: RunPlan,
    *,
    device: str = "auto",
    data_path: str | None = None,
    callbacks: Sequence[Callback] = (),
    should_stop: Callable[[], bool] | None = None,
    profile: bool = False,
    engine: str | None = None,
    pause_at: int | None = None,
) -> list[TrainResult]:
    """Train every run of `plan`; one result per run, in the plan's order.

    `callbacks` hear the first run's progress on the main process; each run's trackers (`train.track`) hear
    their own. `engine`: how a stack's models compute (`stacking.stack_steps`; by default the fastest where
    they run). Refused before any folder is created: a missing tracker, models that cannot stack, a folder
    that holds something else. `pause_at`: stop every run at that step with its checkpoint, marked `paused`
    (a run already past it trains on), for a caller that resumes some of them.
    """
    for name in plan.runs[0].preset.train.track:
        check_available(name)  # a missing extra is refused before anything starts
    cluster, torch_device = join(device)
    try:

        def once(part: RunPlan) -> list[TrainResult]:
            return _train_plan_once(
                part, cluster, torch_device, data_path, callbacks, should_stop, profile, engine, pause_at
            )

        return _train_with_restarts(plan, once, cluster, should_stop)
    finally:
        leave(cluster)


def _train_with_restarts(
    plan: RunPlan,
    once: Callable[[RunPlan], list[TrainResult]],
    cluster: Cluster,
    should_stop: Callable[[], bool] | None,
) -> list[TrainResult]:
    """Train the plan (`once`); then train each run the collapse check sent back (`collapse`) again from
    another seed, in its own folder, until none is sent back."""
    results = once(plan)
    tried = {run.preset.train.seed for run in plan.runs}
    while True:
        again = [k for k, result in enumerate(results) if result.restart]
        if not again or (should_stop is not None and should_stop()):
            return results
        runs = list(plan.runs)
        for k in again:
            seed = next_seed(runs[k].preset.train.seed, tried)
            tried.add(seed)
            if cluster.main:
                put_attempt_aside(runs[k].run_dir, runs[k].preset.train.seed)
            runs[k] = runplan.PlannedRun(runs[k].run_dir, with_seed(runs[k].preset, seed))
        barrier(cluster)  # the folders are ready before any process checks them
        plan = replace(plan, runs=tuple(runs))
        # Only the restarted runs train again; a stack's others are finished. The stack file keeps listing
        # every run, so it is not rewritten.
        redone = once(
            replace(plan, runs=tuple(runs[k] for k in again), resume=False, stack_file=None, within=True)
        )
        for k, result in zip(again, redone):
            results[k] = result


def _train_plan_once(
    plan: RunPlan,
    cluster: Cluster,
    device: torch.device,
    data_path: str | None,
    callbacks: Sequence[Callback],
    should_stop: Callable[[], bool] | None,
    profile: bool,
    engine: str | None,
    pause_at: int | None = None,
) -> list[TrainResult]:
    if cluster.active and plan.stacked:
        raise PresetError("stacked models train in one process; leave out torchrun / --nproc")
    plan.check()
    with pages_kept(), RunContext(plan, cluster, callbacks) as context:
        results = _train(plan, context, cluster, device, data_path, should_stop, profile, engine, pause_at)
    # The other processes wait while rank 0 draws the final figures, so that every process tears the
    # group down together: one leaving early while rank 0 still holds its connections was seen to abort
    # (SIGABRT in gloo's teardown), failing a run that had finished.
    barrier(cluster)
    return results


class RunContext:
    """What one training call holds and releases however it ends: the run folders' locks (rank 0 holds them
    for every process), each run's callbacks and trackers, and whatever the steps hold (threads). A call
    that fails leaves no folder it created holding only its lock, nor a stack file naming no folder."""

    def __init__(self, plan: RunPlan, cluster: Cluster, callbacks: Sequence[Callback]) -> None:
        self.plan, self.cluster, self.callbacks = plan, cluster, callbacks
        self.emits: list[CallbackList] = [CallbackList([]) for _ in plan.runs]
        self._held = ExitStack()
        self._new = [not run_dir.exists() for run_dir in plan.run_dirs]
        self._new_stack = plan.stack_dir is not None and not plan.stack_dir.exists()

    def __enter__(self) -> RunContext:
        self._held.__enter__()
        try:
            if self.cluster.main:
                self._lock()
                self._listen()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _lock(self) -> None:
        for run_dir in self.plan.run_dirs:
            if run_dir.is_dir() or not self.plan.resume:
                self._held.enter_context(runfolder.RunLock(run_dir))
                if self.plan.resume:
                    remove_temporaries(run_dir)  # left by a write the last holder was killed in

    def _listen(self) -> None:
        for k, run in enumerate(self.plan.runs):
            heard = self.callbacks if k == 0 else ()
            self.emits[k] = CallbackList([*heard, *build_trackers(run.preset.train.track, run.run_dir)])
            self._held.callback(self.emits[k].close)

    def hold(self, release: Callable[[], None]) -> None:
        """Call `release` when the run ends, before the locks are let go."""
        self._held.callback(release)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            if kind is not None and self.cluster.main:
                self._clean_up()
        finally:
            self._held.__exit__(kind, exc, trace)

    def _clean_up(self) -> None:
        plan = self.plan
        fresh_stack = plan.stacked and not plan.resume
        for run_dir, new in zip(plan.run_dirs, self._new):
            if (new or fresh_stack) and run_dir.is_dir():
                runfolder.remove_if_only_the_lock(run_dir)
        if plan.stack_dir is None:
            return
        if fresh_stack and plan.stack_file is not None and not any(d.exists() for d in plan.run_dirs):
            plan.stack_file.unlink(missing_ok=True)
        if self._new_stack and plan.stack_dir.is_dir() and not any(plan.stack_dir.iterdir()):
            plan.stack_dir.rmdir()


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


def _train(
    plan: RunPlan,
    context: RunContext,
    cluster: Cluster,
    device: torch.device,
    data_path: str | None,
    should_stop: Callable[[], bool] | None,
    profile: bool,
    engine: str | None,
    pause_at: int | None,
) -> list[TrainResult]:
    resumed = [runfolder.check_run_dir(run_dir, plan.resume) for run_dir in plan.run_dirs]  # under the lock
    barrier(cluster)  # every process has checked the folder before rank 0 writes into it
    preset = plan.runs[0].preset  # the runs share every setting but seeds and loss values
    check_processes(preset, cluster.world)
    if plan.stack_file is not None:
        runfolder.write_stack(plan.stack_file, plan.preset_name, [d.name for d in plan.run_dirs])
    source, total = _open_source(preset, data_path)
    _resume_threads(resumed, device, context.emits[0])  # before the steps size their thread pools
    steps = _steps(plan, source, device, cluster, engine)
    context.hold(steps.close)
    writers = [
        RunWriter(
            k,
            run.preset,
            plan.preset_name,
            run.run_dir,
            emit,
            saved,
            cluster,
            device,
            f"{run.run_dir}: " if plan.stacked else "",
        )
        for k, (run, emit, saved) in enumerate(zip(plan.runs, context.emits, resumed))
    ]
    step = restore(steps, writers, total, device)
    return _run(
        steps, writers, source, total, step, cluster, device, should_stop, profile, data_path, pause_at
    )


def _steps(
    plan: RunPlan, source: ImageSource, device: torch.device, cluster: Cluster, engine: str | None
) -> Steps:
    if not plan.stacked:
        return Stepper.create(plan.runs[0].preset, source, device, cluster)
    from jvae.training.stacking import stack_steps

    return stack_steps(plan.presets, source, device, engine)


def _open_source(preset: Preset, data_path: str | None) -> tuple[ImageSource, int]:
    source = open_dataset(preset.data, data_path)
    if len(source) < preset.train.batch_size:
        raise JvaeError(
            f"the dataset has {len(source)} images, fewer than one batch of {preset.train.batch_size}"
        )
    return source, total_steps(preset, len(source))


# ----------------------------------------------------------------------------------------------- restore


def _resume_threads(resumed: list[Checkpoint | None], device: torch.device, emit: Callback) -> None:
    """Continue on the thread count the run trained with: CPU kernels split their sums by thread, so another
    count continues within float rounding of the uninterrupted run, not bit for bit. jvae's own sharing of
    the cores (fewer threads while other jvae processes run) gives way to it; the user's own setting
    ($JVAE_THREADS, $OMP_NUM_THREADS) does not, and the log says so in one line."""
    recorded = next(
        (c.state.threads for c in resumed if c is not None and c.state is not None and c.state.threads),
        None,
    )
    now = torch.get_num_threads()
    if recorded is None or device.type != "cpu" or recorded == now:
        return
    chosen = next((f"${name}" for name in (THREADS_ENV, "OMP_NUM_THREADS") if os.environ.get(name)), None)
    if chosen is not None:
        emit.on_status(
            0,
            f"resuming with {now} threads ({chosen}) where the run trained with {recorded}: it continues "
            "within float rounding of an uninterrupted run, not bit for bit",
        )
        return
    torch.set_num_threads(recorded)
    emit.on_status(
        0,
        f"resuming with the {recorded} threads the run trained with (sharing the cores would give it {now}), "
        "so that it continues bit for bit",
    )


def restore(steps: Steps, writers: list[RunWriter], total: int, device: torch.device) -> int:
    """Load every run's checkpoint into the steps; the step they continue from (0 for new runs)."""
    saved = [
        (writer, writer.resumed, writer.resumed.state)
        for writer in writers
        if writer.resumed is not None and writer.resumed.state is not None
    ]
    if not saved:
        return 0
    if len({checkpoint.step for _, checkpoint, _ in saved}) > 1:
        at = ", ".join(f"{w.run_dir.name} at step {c.step}" for w, c, _ in saved)
        raise RunDirError(
            f"the stack's runs stopped at different steps ({at}); resume each folder on its own "
            "(jvae train --resume FOLDER)"
        )
    first, first_state = saved[0][1], saved[0][2]
    step = _resumed_step(first, saved[0][0].ckpt_path, total)
    states = []
    for writer, checkpoint, state in saved:
        if kind_of(writer.preset.loss).critic is not None and state.critic is None:
            raise RunDirError(f"{writer.ckpt_path} has no {writer.preset.loss.kind} critic state to resume")
        states.append(Resumed(checkpoint.model, state.optimizer, _noise_state(state, device), state.critic))
    steps.restore(states)
    for (writer, _, state), resumed in zip(saved, states):
        if resumed.noise is None:
            steps.noises[writer.index].manual_seed(writer.preset.train.seed + 1 + step)
            writer.emit.on_status(
                step,
                f"resuming a {state.rng.get('device', 'cpu')} run on {device.type}: sampling noise is "
                "reseeded from the step",
            )
    torch.set_rng_state(first_state.rng["torch"])
    return step


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


# ----------------------------------------------------------------------------------------------- run


def _run(
    steps: Steps,
    writers: list[RunWriter],
    source: ImageSource,
    total: int,
    start_step: int,
    cluster: Cluster,
    device: torch.device,
    should_stop: Callable[[], bool] | None,
    profile: bool,
    data_path: str | None,
    pause_at: int | None = None,
) -> list[TrainResult]:
    """Train every run from `start_step` to `total`, then its final checkpoint, unit KL and traversal."""
    stop = should_stop or (lambda: False)
    preset = writers[0].preset  # the runs share every setting the loop reads
    reads_held_out = preset.train.eval_every is not None or check_step(preset, total) is not None
    held_out = held_out_source(preset, data_path) if reads_held_out and cluster.main else None
    for writer in writers:
        writer.prepare(start_step)
    where = f"{device}" + (f" x {cluster.world} processes" if cluster.active else "")
    precision = precision_label(preset.train.precision, device)
    stacked = f", one of {len(writers)} stacked models ({steps.engine})" if len(writers) > 1 else ""
    description = f"{source.description} on {where} ({precision}{stacked})"
    skipped = skipped_files(source)
    for writer in writers:
        dumped = writer.preset.model_dump(mode="json")
        info = RunInfo(writer.run_dir, writer.preset_name, dumped, total, start_step, description)
        writer.start(info, skipped)
    timer = PhaseTimer(device) if profile else None
    started = time.perf_counter()
    for k in range(len(writers)):
        steps.member_model(k).train()
    pause = pause_at if pause_at is not None and pause_at > start_step else None
    actions = periodic_actions(writers, steps, source, held_out, total, cluster, device, pause)
    loop = Loop(
        steps, writers, actions, start_step, total, cluster, device, stop, timer, preset.train.log_every
    )
    with ExitStack() as closing:
        for writer in writers:
            writer.open_log(closing)
        interrupted = loop.run()
    step = loop.step
    seconds = time.perf_counter() - started
    images_per_sec = (step - start_step) * preset.train.batch_size / seconds if seconds > 0 else 0.0
    phases = dict(timer.seconds) if timer is not None else {}
    timing = Timing(seconds, images_per_sec, cluster.main, phases, step - start_step)
    if interrupted:
        save_all(writers, steps, step, total)
        return [writer.end(step, total, True, timing) for writer in writers]
    for writer in writers:
        writer.check_finite(step)  # the last steps, on every process, before rank 0 goes on alone
    if not cluster.main:
        return [writer.end(step, total, False, timing) for writer in writers]
    # A stop request that arrives with the last step or during one run's final figures ends the others
    # with their checkpoints, without their figures.
    return [writer.finish(steps, source, step, total, stop, timing) for writer in writers]
