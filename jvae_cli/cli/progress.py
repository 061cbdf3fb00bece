"""Training progress on the terminal: a rich progress bar, or plain lines when output is not a terminal."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from jvae_cli.cli.console import err


def compact(record: dict[str, Any]) -> str:
    """The progress bar's share of a record, short enough for an 80-column terminal."""
    return (
        f"loss {record['loss']:.1f}  KLz {sum(record['kl_cont']):.2f}/{record['capacity_cont']:.1f}  "
        f"KLc {sum(record['kl_disc']):.2f}/{record['capacity_disc']:.2f}  {record['images_per_sec']:.0f} img/s"
    )


def summary(record: dict[str, Any]) -> str:
    kl_cont = sum(record.get("kl_cont", []))
    kl_disc = sum(record.get("kl_disc", []))
    return (
        f"loss {record['loss']:.2f}  recon {record['recon']:.2f}  "
        f"KLz {kl_cont:.2f}/{record['capacity_cont']:.2f}  KLc {kl_disc:.2f}/{record['capacity_disc']:.2f}  "
        f"{record['images_per_sec']:.0f} img/s"
    )


class TrainDisplay:
    """A callback for the trainer's events."""

    def __init__(self) -> None:
        self.interactive = err.is_terminal
        self.progress: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> TrainDisplay:
        if self.interactive:
            self.progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(bar_width=12),
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

    def __call__(self, event: Any) -> None:
        if event.kind == "start":
            self.message(f"training on {event.message}, steps {event.step}/{event.total_steps}")
            if self.progress is not None:
                self.task = self.progress.add_task(
                    "train", total=event.total_steps, completed=event.step, stats=""
                )
        elif event.kind == "log":
            if self.progress is not None:
                self.progress.update(self.task, completed=event.step, stats=compact(event.record))
            else:
                self.message(f"step {event.step}/{event.total_steps}  {summary(event.record)}")
        elif event.kind == "status":
            self.message(event.message)


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
