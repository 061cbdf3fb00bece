"""Training curves from runs' metrics.jsonl: what `jvae plot` draws, several runs overlaid."""

from __future__ import annotations

from pathlib import Path

from jvae.base.errors import JvaeError
from jvae.base.files import write_via
from jvae.base.runfiles import EvalLine, RunFileError, TrainLine, read_metrics
from jvae.runs.runfolder import METRICS

PANELS = (  # (title, what is drawn)
    ("loss", "training loss per image"),
    ("reconstruction", "reconstruction (nats per image)"),
    ("kl", "KL against capacity (nats; dashed: capacity)"),
    ("kl_units", "KL per continuous unit (nats)"),
    ("throughput", "images/s"),
    ("eval", "evaluation ELBO (fixed sample)"),
)


def read_run(run_dir: Path) -> tuple[list[TrainLine], list[EvalLine]]:
    """(training lines, evaluation lines) of a run folder's metrics.jsonl."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise RunFileError(f"{run_dir}: no {METRICS} (not a jvae run folder)")
    train, evaluations = read_metrics(path)
    if not train:
        raise RunFileError(f"{path} holds no training lines yet")
    return train, evaluations


def read_runs(runs: list[Path]) -> tuple[list[tuple[Path, list[TrainLine], list[EvalLine]]], list[str]]:
    """The runs that can be read, and one line for each that cannot (missing or damaged metrics)."""
    readable, damaged = [], []
    for run in runs:
        try:
            readable.append((run, *read_run(run)))
        except RunFileError as exc:
            damaged.append(str(exc))
    if not readable:
        raise JvaeError(damaged[0])
    return readable, damaged


def plot_runs(runs: list[Path], out: Path, labels: list[str] | None = None) -> list[str]:
    """One figure of six panels, a colour per run; returns the legend's entries, one per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = [read_run(run) for run in runs]
    names = labels or [Path(run).resolve().name for run in runs]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    panels = dict(zip((key for key, _ in PANELS), axes.flat))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, ((train, evaluations), name) in enumerate(zip(data, names)):
        colour = colours[i % len(colours)]
        steps = [r.step for r in train]
        panels["loss"].plot(steps, [r.loss for r in train], color=colour, label=name)
        panels["reconstruction"].plot(steps, [r.recon for r in train], color=colour)
        panels["kl"].plot(steps, [sum(r.kl_cont) + sum(r.kl_disc) for r in train], color=colour)
        capacity = [r.capacity_cont + r.capacity_disc for r in train]
        if any(capacity):
            panels["kl"].plot(steps, capacity, color=colour, linestyle="--", linewidth=1)
        units = len(train[-1].kl_cont)
        for unit in range(units):
            values = [r.kl_cont[unit] if unit < len(r.kl_cont) else float("nan") for r in train]
            panels["kl_units"].plot(steps, values, color=colour, linewidth=0.8)
        panels["throughput"].plot(steps, [r.images_per_sec for r in train], color=colour)
        if evaluations:
            panels["eval"].plot(
                [r.step for r in evaluations], [r.elbo for r in evaluations], "o-", color=colour
            )
    for key, title in PANELS:
        panels[key].set_title(title)
        panels[key].set_xlabel("step")
    if not any(evaluations for _, evaluations in data):
        panels["eval"].text(0.5, 0.5, "no evaluations\n(set train.eval_every)", ha="center", va="center")
    legend = fig.legend(loc="lower center", ncol=min(len(names), 6), frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    write_via(out, lambda temporary: fig.savefig(temporary, dpi=100, format="png"))
    plt.close(fig)
    return [text.get_text() for text in legend.get_texts()]
