"""Training callbacks: the public way to watch a run.

The trainer calls these hooks on the main process only, at fixed points of a run; they receive plain values
(paths, dicts of numbers, numpy images) and never the live model, so nothing a callback does can change
what is trained. jvae's own progress display and trackers (TensorBoard, MLflow) are callbacks; so can be
yours:

    class Print(Callback):
        def on_log(self, step, record):
            print(step, record["loss"])

    trainer.train(preset, name, run_dir, callbacks=[Print()])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RunInfo:
    """What a run is, given to `on_start` and `on_end`."""

    run_dir: Path
    preset_name: str
    preset: dict[str, Any]  # the resolved preset, JSON-ready
    total_steps: int
    start_step: int  # 0, or the checkpoint's step when resuming
    description: str  # the data and device, in words


class Callback:
    """Override the hooks you need; each default does nothing."""

    def on_start(self, run: RunInfo) -> None:
        """Before the first step (after a resume: before the first new step)."""

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        """A line of metrics.jsonl: the training terms averaged over the last `train.log_every` steps."""

    def on_checkpoint(self, step: int, path: Path) -> None:
        """`path` was written (ckpt.pt, or ckpt-STEP.pt of the history)."""

    def on_evaluation(self, step: int, record: dict[str, Any], images: dict[str, np.ndarray]) -> None:
        """Every `train.eval_every` steps: held-out terms (the `split: "eval"` line of metrics.jsonl) and
        pictures (H, W, 3) uint8: `traversal` (a row per unit, a column per value) and `reconstruction`
        (inputs above their reconstructions)."""

    def on_status(self, step: int, message: str) -> None:
        """Something worth telling a person (unreadable files left out, the final figures being drawn)."""

    def on_end(self, run: RunInfo, step: int, interrupted: bool) -> None:
        """The run stopped at `step`: finished, or interrupted with a checkpoint to resume from."""

    def close(self) -> None:
        """Release files and connections; called once, however the run ended."""


class CallbackList(Callback):
    """Several callbacks called in order."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_start(self, run: RunInfo) -> None:
        for callback in self.callbacks:
            callback.on_start(run)

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_log(step, record)

    def on_checkpoint(self, step: int, path: Path) -> None:
        for callback in self.callbacks:
            callback.on_checkpoint(step, path)

    def on_evaluation(self, step: int, record: dict[str, Any], images: dict[str, np.ndarray]) -> None:
        for callback in self.callbacks:
            callback.on_evaluation(step, record, images)

    def on_status(self, step: int, message: str) -> None:
        for callback in self.callbacks:
            callback.on_status(step, message)

    def on_end(self, run: RunInfo, step: int, interrupted: bool) -> None:
        for callback in self.callbacks:
            callback.on_end(run, step, interrupted)

    def close(self) -> None:
        for callback in self.callbacks:
            callback.close()
