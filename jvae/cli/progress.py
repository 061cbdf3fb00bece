"""Training progress on the terminal: a rich progress bar, or plain lines when output is not a terminal."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from jvae.base.callbacks import Callback, RunInfo
from jvae.cli.console import err


def compact(record: dict[str, Any]) -> str:
    """The progress bar's share of a record, short enough for an 80-column terminal."""
    return (
        f"loss {record['loss']:.1f} KLz {sum(record['kl_cont']):.2f}/{record['capacity_cont']:.1f} "
        f"KLc {sum(record['kl_disc']):.2f}/{record['capacity_disc']:.2f} {record['images_per_sec']:.0f} img/s"
    )


def summary(record: dict[str, Any]) -> str:
    kl_cont = sum(record.get("kl_cont", []))
    kl_disc = sum(record.get("kl_disc", []))
    return (
        f"loss {record['loss']:.2f}  recon {record['recon']:.2f}  "
        f"KLz {kl_cont:.2f}/{record['capacity_cont']:.2f}  KLc {kl_disc:.2f}/{record['capacity_disc']:.2f}  "
        f"{record['images_per_sec']:.0f} img/s"
    )


class TrainDisplay(Callback):
    """The trainer's progress on stderr: a bar on a terminal, a line per log step otherwise."""

    def __init__(self) -> None:
        self.interactive = err.is_terminal
        self.progress: Progress | None = None
        self.task: Any = None
        self.total = 0

    def __enter__(self) -> TrainDisplay:
        if self.interactive:
            self.progress = Progress(
                BarColumn(bar_width=8),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=err,
            )
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def message(self, text: str) -> None:
        err.print(text, markup=False, highlight=False)

    def on_start(self, run: RunInfo) -> None:
        self.total = run.total_steps
        self.message(f"training on {run.description}, steps {run.start_step}/{run.total_steps}")
        if self.progress is not None:
            self.task = self.progress.add_task(
                "train", total=run.total_steps, completed=run.start_step, stats=""
            )

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, stats=compact(record))
        else:
            self.message(f"step {step}/{self.total}  {summary(record)}")

    def on_evaluation(self, step: int, record: dict[str, Any], images: dict[str, Any]) -> None:
        mig = f", MIG {record['mig']:.3f}" if "mig" in record else ""
        self.message(
            f"evaluation at step {step}: ELBO {record['elbo']:.2f}{mig}; snapshot {record['snapshot']}"
        )

    def on_status(self, step: int, message: str) -> None:
        self.message(message)


def profile_table(seconds: dict[str, float], steps: int) -> str:
    """Milliseconds per step and share of the step for each phase, in the order a step runs them."""
    order = ["data", "forward", "backward", "optimizer", "critic", "logging"]
    total = sum(seconds.values()) or 1.0
    lines = [f"{'phase':<10} {'ms/step':>9} {'share':>6}"]
    for phase in [p for p in order if p in seconds] + [p for p in seconds if p not in order]:
        lines.append(
            f"{phase:<10} {1000 * seconds[phase] / max(steps, 1):9.2f} {100 * seconds[phase] / total:5.1f}%"
        )
    lines.append(f"{'step':<10} {1000 * total / max(steps, 1):9.2f} 100.0%")
    return "\n".join(lines)
