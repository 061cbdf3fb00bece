"""TensorBoard: scalars of every logged term (per unit for the KL lists), the capacities, throughput and
the held-out terms; the traversal and reconstructions of each evaluation as images. Event files go to
RUN/tensorboard; watch them with `tensorboard --logdir RUN/tensorboard` (or a study folder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from jvae.base.callbacks import Callback, RunInfo
from jvae.base.files import WriteError, writable_folder

FOLDER = "tensorboard"


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """Every number of a metrics record under a tag; lists become one tag per entry (kl_cont/3)."""
    found: dict[str, float] = {}
    for key, value in record.items():
        if key in ("step", "split") or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            found[key] = float(value)
        elif isinstance(value, list):
            found.update({f"{key}/{i}": float(v) for i, v in enumerate(value) if isinstance(v, (int, float))})
    return found


class TensorBoardTracker(Callback):
    """Writes nothing until the run starts (the run folder is checked empty before that)."""

    def __init__(self, run_dir: Path) -> None:
        self.folder = Path(run_dir) / FOLDER
        if self.folder.exists() or self.folder.is_symlink():
            writable_folder(self.folder)  # refused now, before the run starts, if it cannot be used
        self.writer: Any = None

    def on_start(self, run: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        writable_folder(self.folder)
        try:
            self.writer = SummaryWriter(log_dir=str(self.folder))
            self.writer.add_text("preset", f"```\n{json.dumps(run.preset, indent=2)}\n```", run.start_step)
        except OSError as exc:
            raise WriteError(f"{self.folder}: tensorboard cannot write ({exc.strerror or exc})") from None

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for tag, value in scalars(record).items():
            self.writer.add_scalar(f"train/{tag}", value, step)
        self.writer.flush()

    def on_evaluation(self, step: int, record: dict[str, Any], images: dict[str, np.ndarray]) -> None:
        if self.writer is None:
            return
        for tag, value in scalars(record).items():
            self.writer.add_scalar(f"eval/{tag}", value, step)
        for name, image in images.items():
            self.writer.add_image(f"eval/{name}", image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def build(run_dir: Path) -> Callback:
    return TensorBoardTracker(run_dir)
