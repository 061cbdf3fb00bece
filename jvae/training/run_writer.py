"""What one trained run leaves in its folder: its log lines, its checkpoints and its final figures.

The loop trains one run or a stack of runs; each run (a member) has its own `RunWriter`. Off rank 0 of a
distributed run the writer writes nothing, but it still takes part in the checks every process must agree on
(whether a loss diverged, the log line's means over processes), so the collectives match.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

import torch

from jvae.base.callbacks import CallbackList, RunInfo
from jvae.base.errors import JvaeError
from jvae.base.files import appending, write_text
from jvae.data.sources import ImageSource
from jvae.modeling.checkpoint import Checkpoint, RunState
from jvae.modeling.latents import measure_unit_kl
from jvae.modeling.losses import LossTerms
from jvae.modeling.presets import Preset, preset_to_toml
from jvae.modeling.schedules import learning_rate, temperature
from jvae.runs import runfolder
from jvae.training import collapse
from jvae.training.collapse import Finding
from jvae.training.distributed import Cluster, any_rank, mean_over_ranks
from jvae.training.steps import MemberState, Steps
from jvae.use.figures import write_ranked_traversal

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
    collapse: Finding | None = None  # the collapse check of this call, where one ran (rank 0)
    restart: bool = False  # the check sent the run back to train again from another seed (every process)
    paused: bool = (
        False  # stopped at the step it was asked to pause at (`train_plan(pause_at=...)`), resumable
    )


@dataclass(frozen=True)
class Timing:
    """The TrainResult fields every member of one loop shares."""

    seconds: float
    images_per_sec: float
    main: bool
    profile: dict[str, float]
    steps_run: int


class Interval:
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


class Finite:
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


class RunWriter:
    """One run the loop trains (a single run, or one model of a stack): its folder, preset and callbacks,
    and what it has logged and saved."""

    def __init__(
        self,
        index: int,
        preset: Preset,
        preset_name: str,
        run_dir: Path,
        emit: CallbackList,
        resumed: Checkpoint | None,
        cluster: Cluster,
        device: torch.device,
        label: str = "",
    ) -> None:
        self.index, self.preset, self.preset_name, self.run_dir = index, preset, preset_name, run_dir
        self.emit, self.resumed, self.cluster, self.device = emit, resumed, cluster, device
        self.label = label  # names the run in errors when several train together
        self.main = cluster.main
        self.interval = Interval()
        self.finite = Finite(device)
        self.saved_step: int | None = resumed.step if resumed is not None else None
        self.log: IO[str] | None = None
        self.run: RunInfo | None = None
        self.collapse: Finding | None = None
        self.restart = False
        self.paused = False

    @property
    def ckpt_path(self) -> Path:
        return runfolder.checkpoint(self.run_dir)

    # ------------------------------------------------------------------------------------------- start

    def prepare(self, step: int) -> None:
        """The folder as the run continues it: the log trimmed to the resumed step, the preset written."""
        if not self.main:
            return
        if self.resumed is not None:
            runfolder.trim_metrics(self.run_dir, step)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text(runfolder.preset_file(self.run_dir), preset_to_toml(self.preset))

    def start(self, run: RunInfo, skipped: list[tuple[Path, str]]) -> None:
        self.run = run
        self.emit.on_start(run)
        if skipped:
            listed = "; ".join(str(path) for path, _ in skipped[:5]) + ("; ..." if len(skipped) > 5 else "")
            self.emit.on_status(run.start_step, f"left out {len(skipped)} unreadable image(s): {listed}")
        resumed = self.resumed
        if resumed is not None and resumed.state is not None and resumed.state.interval is not None:
            self.interval.restore(resumed.state.interval, self.device)

    def open_log(self, closing: ExitStack) -> None:
        if self.main:
            self.log = closing.enter_context(appending(runfolder.metrics(self.run_dir)))

    # ------------------------------------------------------------------------------------------- steps

    def record(self, terms: LossTerms, extra: dict[str, Any], step: int) -> None:
        self.interval.add(
            loss=terms.loss, recon=terms.recon, kl_cont=terms.kl_cont, kl_disc=terms.kl_disc, **extra
        )
        self.finite.add(terms.loss, step)

    def check_finite(self, step: int, everywhere: bool = True) -> None:
        """Raise when a loss since the start was not finite; `everywhere`: agree with the other processes."""
        diverged = self.finite.diverged_at()
        if everywhere and self.cluster.active:
            if not any_rank(self.cluster, diverged is not None, self.device):
                return
            diverged = diverged or step
        if diverged is None:
            return
        last = (
            f"the last good checkpoint is {self.ckpt_path} (step {self.saved_step})"
            if self.saved_step is not None
            else "no checkpoint was written"
        )
        raise JvaeError(
            f"{self.label}training diverged at step {diverged} (the loss is not finite); try a lower "
            f"train.lr; {last}"
        )

    def write_line(self, terms: LossTerms, step: int, steps_per_epoch: int, total: int) -> None:
        """The metrics.jsonl line at `step`: interval means of every term and where the schedules are."""
        preset, interval = self.preset, self.interval
        record = {
            "step": step,
            "epoch": step / steps_per_epoch,
            **interval.means(mean_over_ranks(self.cluster, interval.sums)),
        }
        record.update(
            capacity_cont=terms.capacity_cont,
            capacity_disc=terms.capacity_disc,
            lr=learning_rate(preset.train, step, total),
            temperature=temperature(preset.model, step),
            images_per_sec=round(interval.images_per_sec(preset.train.batch_size), 1),
        )
        self._write(record)
        self.emit.on_log(step, record)
        interval.reset()

    def write_evaluation(self, step: int, evaluation: dict[str, Any], pictures: dict[str, Any]) -> None:
        self._write(evaluation)
        self.emit.on_evaluation(step, evaluation, pictures)

    def note_collapse(self, finding: Finding) -> bool:
        """Say and record the collapse check (rank 0); whether this run is to restart from another seed."""
        train = self.preset.train
        action = "warned"
        if finding.collapsed and train.on_collapse == "restart":
            left = train.collapse_restarts - collapse.restarts_taken(self.run_dir)
            action = "restarted" if left > 0 else "kept"
        self.collapse = collapse.set_action(self.run_dir, finding, action)
        follow = {
            "restarted": "; restarting from another seed",
            "kept": f"; no restarts left ({train.collapse_restarts} taken), training on",
            "warned": '; train.on_collapse = "restart" would train it again from another seed',
        }
        tail = follow[action] if finding.collapsed else ""
        self.emit.on_status(finding.step, f"{self.label}{finding.line()}{tail}")
        self.restart = action == "restarted"
        return self.restart

    def _write(self, record: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.write(json.dumps(record) + "\n")
            self.log.flush()

    def save(
        self,
        state: Callable[[], MemberState],
        step: int,
        total: int,
        unit_kl: dict | None = None,
        everywhere: bool = True,
        periodic: bool = False,
    ) -> None:
        """Write the checkpoint (rank 0); `everywhere`: every process calls this at the same step;
        `periodic`: a `checkpoint_every` one, which the history keeps. `state` is asked for on rank 0 only."""
        self.check_finite(step, everywhere)
        if not self.main:
            return
        running = self.interval.state() if self.interval.count else None
        checkpoint = _checkpoint(self.preset_name, self.preset, state(), step, total, unit_kl, running)
        checkpoint.save(self.ckpt_path)
        self.saved_step = step
        self.emit.on_checkpoint(step, self.ckpt_path)
        keep = self.preset.train.keep_checkpoints
        if periodic and keep:
            kept = runfolder.kept_checkpoint(self.run_dir, step)
            checkpoint.save(kept)
            self.emit.on_checkpoint(step, kept)
            for old in runfolder.kept_checkpoints(self.run_dir)[:-keep]:
                old.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------------- end

    def end(
        self, step: int, total: int, stopped: bool, timing: Timing, traversal: Path | None = None
    ) -> TrainResult:
        assert self.run is not None
        self.emit.on_end(self.run, step, stopped)
        return TrainResult(
            self.run_dir,
            step,
            total,
            stopped,
            timing.seconds,
            timing.images_per_sec,
            traversal,
            timing.main,
            timing.profile,
            timing.steps_run,
            self.collapse,
            self.restart,
            self.paused,
        )

    def finish(
        self,
        steps: Steps,
        source: ImageSource,
        step: int,
        total: int,
        stop: Callable[[], bool],
        timing: Timing,
    ) -> TrainResult:
        """The end of a finished run (rank 0): unit KL measured and saved with the checkpoint, then the
        traversal GIF. A stop request ends it with the checkpoint, without the figures."""
        state = partial(steps.member_state, self.index)
        if stop():
            self.save(state, step, total, everywhere=False)
            return self.end(step, total, True, timing)
        model = steps.member_model(self.index)
        self.emit.on_status(step, "measuring unit KL and drawing traversals")
        kl = measure_unit_kl(model, source, self.device, seed=self.preset.train.seed)
        self.save(state, step, total, kl.as_dict(), everywhere=False)
        if stop():
            return self.end(step, total, True, timing)
        traversal = write_ranked_traversal(
            model,
            source,
            self.device,
            kl,
            runfolder.traversal(self.run_dir),
            self.preset.train.seed,
            frames=TRAVERSAL_FRAMES,
            encoded=TRAVERSAL_ENCODED,
            duration_ms=120,
        )
        return self.end(step, total, stop(), timing, traversal)


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
        threads=torch.get_num_threads() if saved.noise.device.type == "cpu" else None,
    )
    return checkpoint
