"""The training loop: a stop request, a step, then whatever periodic action is due.

The loop drives the steps of one run or of a stack (`steps.Steps`) and knows nothing of what happens
between steps: each action (a log line, an evaluation, a checkpoint, the divergence check) is a small
object registered with it that says when it is due. A new periodic action is a new class here and one line
in `actions`, not an edit of the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import torch

from jvae.data.sources import ImageSource
from jvae.modeling.losses import LossTerms
from jvae.training import collapse
from jvae.training.distributed import Cluster, any_rank
from jvae.training.monitor import evaluate_now
from jvae.training.run_writer import RunWriter
from jvae.training.steps import PhaseTimer, Steps

Results = list[tuple[LossTerms, dict[str, Any]]]  # each member's terms of the step just taken


class Periodic(Protocol):
    """An action taken after the steps it is due at. `timed` False: its time is left out of the images per
    second the log reports (an evaluation, a checkpoint)."""

    timed: bool

    def due(self, step: int) -> bool: ...

    def __call__(self, step: int, results: Results) -> None: ...


@dataclass
class Loop:
    """Train from `step` to `total`; `run` returns whether a stop request ended it early."""

    steps: Steps
    writers: list[RunWriter]
    actions: list[Periodic]
    step: int
    total: int
    cluster: Cluster
    device: torch.device
    stop: Callable[[], bool]
    timer: PhaseTimer | None = None
    log_every: int = 1  # under DDP every process must stop at the same step: the request is shared here

    def stop_requested(self) -> bool:
        if any(getattr(action, "halt", False) for action in self.actions):
            return True  # agreed by every process when the action decided it
        if self.cluster.active and self.step % self.log_every:
            return False
        return any_rank(self.cluster, self.stop(), self.device)

    def run(self) -> bool:
        while self.step < self.total:
            if self.stop_requested():
                return True
            if self.timer is not None:
                self.timer.restart()
            results = self.steps.step_members(self.step, self.timer)
            self.step += 1
            for writer, (terms, extra) in zip(self.writers, results):
                writer.record(terms, extra, self.step)
            for action in self.actions:
                if action.due(self.step):
                    self._take(action, results)
            if self.timer is not None:
                self.timer("logging")
        return False

    def _take(self, action: Periodic, results: Results) -> None:
        started = time.perf_counter()
        action(self.step, results)
        if not action.timed:
            for writer in self.writers:
                writer.interval.excluded += time.perf_counter() - started


# ----------------------------------------------------------------------------------------------- actions


@dataclass
class DivergenceCheck:
    """Every step where reading the loss costs nothing (the CPU, one process): a diverged run stops at once."""

    writers: list[RunWriter]
    timed: bool = True

    def due(self, step: int) -> bool:
        return True

    def __call__(self, step: int, results: Results) -> None:
        for writer in self.writers:
            writer.check_finite(step, everywhere=False)


@dataclass
class LogLine:
    """Every `every` steps and at the last: each member's metrics.jsonl line."""

    writers: list[RunWriter]
    every: int
    total: int
    steps_per_epoch: int
    timed: bool = True

    def due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.total

    def __call__(self, step: int, results: Results) -> None:
        for writer, (terms, _) in zip(self.writers, results):
            writer.check_finite(step)
            writer.write_line(terms, step, self.steps_per_epoch, self.total)


@dataclass
class Evaluation:
    """Every `every` steps (rank 0): each member's held-out ELBO and traversal snapshot (`monitor`)."""

    writers: list[RunWriter]
    steps: Steps
    source: ImageSource
    held_out: ImageSource | None
    device: torch.device
    every: int
    timed: bool = False

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def __call__(self, step: int, results: Results) -> None:
        for writer in self.writers:
            writer.check_finite(step, everywhere=False)
            model = self.steps.member_model(writer.index)
            evaluation, pictures = evaluate_now(
                model, writer.preset, self.source, self.device, step, writer.run_dir, self.held_out
            )
            writer.write_evaluation(step, evaluation, pictures)
            model.train()


@dataclass
class CollapseCheck:
    """Once, at `at` (`collapse.check_step`): each member's discrete code read on held-out images, said in one
    line and kept in collapse.json. When every member collapsed and may restart, the loop stops here, so the
    trainer restarts them without training a collapsed run to its end."""

    writers: list[RunWriter]
    steps: Steps
    source: ImageSource
    held_out: ImageSource | None
    device: torch.device
    cluster: Cluster
    at: int
    halt: bool = False
    timed: bool = False

    def due(self, step: int) -> bool:
        return step == self.at

    def __call__(self, step: int, results: Results) -> None:
        restarting = []
        for writer in self.writers:
            if not writer.main:
                continue
            writer.check_finite(step, everywhere=False)
            model = self.steps.member_model(writer.index)
            finding = collapse.examine(model, writer.preset, self.held_out or self.source, self.device, step)
            restarting.append(writer.note_collapse(finding))
        self.halt = any_rank(self.cluster, bool(restarting) and all(restarting), self.device)
        if self.halt:  # the other processes of a distributed run (a single run) restart with rank 0
            for writer in self.writers:
                writer.restart = True


@dataclass
class Pause:
    """At `at`, before the end: the loop stops there as if interrupted, every checkpoint is written and the runs
    say they paused, so that the caller can look at them (early selection) and resume the ones it keeps."""

    writers: list[RunWriter]
    at: int
    halt: bool = False
    timed: bool = False

    def due(self, step: int) -> bool:
        return step == self.at

    def __call__(self, step: int, results: Results) -> None:
        self.halt = True
        for writer in self.writers:
            writer.paused = True


@dataclass
class PeriodicCheckpoint:
    """Every `every` steps before the last: every member's checkpoint (the final one is the writer's)."""

    writers: list[RunWriter]
    steps: Steps
    every: int
    total: int
    timed: bool = False

    def due(self, step: int) -> bool:
        return step % self.every == 0 and step < self.total

    def __call__(self, step: int, results: Results) -> None:
        save_all(self.writers, self.steps, step, self.total, periodic=True)


def save_all(
    writers: list[RunWriter],
    steps: Steps,
    step: int,
    total: int,
    everywhere: bool = True,
    periodic: bool = False,
) -> None:
    """Every member's checkpoint, none when any has diverged."""
    for writer in writers:
        writer.check_finite(step, everywhere)
    for writer in writers:
        writer.save(
            partial(steps.member_state, writer.index), step, total, everywhere=everywhere, periodic=periodic
        )


def periodic_actions(
    writers: list[RunWriter],
    steps: Steps,
    source: ImageSource,
    held_out: ImageSource | None,
    total: int,
    cluster: Cluster,
    device: torch.device,
    pause_at: int | None = None,
) -> list[Periodic]:
    """The actions a run takes between steps, in the order they are taken at a step where several are due.
    A new one is registered here."""
    train = writers[0].preset.train  # the runs share every setting but seeds and loss values
    actions: list[Periodic] = []
    if writers[0].finite.every_step and not cluster.active:
        actions.append(DivergenceCheck(writers))
    actions.append(LogLine(writers, train.log_every, total, steps.steps_per_epoch))
    if train.eval_every is not None and cluster.main:
        actions.append(Evaluation(writers, steps, source, held_out, device, train.eval_every))
    at = collapse.check_step(writers[0].preset, total)
    if at is not None:
        actions.append(CollapseCheck(writers, steps, source, held_out, device, cluster, at))
    actions.append(PeriodicCheckpoint(writers, steps, train.checkpoint_every, total))
    if pause_at is not None and pause_at < total:
        actions.append(Pause(writers, pause_at))
    return actions
