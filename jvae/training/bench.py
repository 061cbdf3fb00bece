"""Throughput measured, not guessed: jvae's training step against a plain reference loop, encoding, metrics.

The reference does what the official JointVAE training loop does: eager fp32 PyTorch, a torch DataLoader over
the dataset held in memory with per-sample indexing and default collation, Adam, and the loss read back to the
host every step. Both loops train the same preset's model on the same images in this process, after warm-up,
timed over several repeats, so their ratio is what choosing jvae is worth on this machine.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from jvae.base.devices import precision_label
from jvae.base.errors import UsageError
from jvae.base.host_memory import pages_kept
from jvae.data.capabilities import labels_of
from jvae.data.sources import ImageSource
from jvae.fast import as_stock, stock
from jvae.kinds import build_critic, model_objective
from jvae.modeling.augment import jittered
from jvae.modeling.builder import build_model
from jvae.modeling.checkpoint import Checkpoint, LoadedCheckpoint
from jvae.modeling.presets import Preset, with_seed
from jvae.training.steps import Stepper, critic_step

BASELINE_IMAGES = 4096  # images the reference holds in memory (its DataLoader reshuffles them each epoch)


@dataclass
class Timing:
    """Repeated measurements of one quantity."""

    values: list[float]
    unit: str

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def summary(self) -> dict[str, Any]:
        return {"median": self.median, "min": min(self.values), "max": max(self.values), "unit": self.unit}


@dataclass
class BenchReport:
    setting: dict[str, Any]
    train: Timing
    baseline: Timing
    encode: Timing | None = None
    metrics_seconds: float | None = None
    losses: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.train.median / self.baseline.median

    def as_dict(self) -> dict[str, Any]:
        return {
            "setting": self.setting,
            "train": self.train.summary(),
            "baseline": self.baseline.summary(),
            "ratio": self.ratio,
            "encode": self.encode.summary() if self.encode else None,
            "metrics_seconds": self.metrics_seconds,
            "losses": self.losses,
        }


def bench_setting(
    preset_name: str,
    preset: Preset,
    source: ImageSource,
    device: torch.device,
    batch: int,
    precision: str,
    **extra: Any,
) -> dict[str, Any]:
    """What every benchmark report says it measured, so that two reports can be compared by reading them."""
    return {
        "preset": preset_name,
        "dataset": source.description,
        "image_size": preset.data.image_size,
        "batch_size": batch,
        "device": str(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
        **extra,
        "torch": str(torch.__version__),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _interleaved(
    runs: list[Callable[[int], None]],
    steps: int,
    repeats: int,
    warmup: int,
    batch: int | list[int],
    device: torch.device,
) -> list[Timing]:
    """images/s of each `run(n)` (n steps of `batch` images, or of its own entry of a list) after `warmup`
    steps each, timed in alternation repeat by repeat so that every loop meets the same machine load."""
    batches = batch if isinstance(batch, list) else [batch] * len(runs)
    for run in runs:
        run(warmup)
    _sync(device)
    values: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, collected, images in zip(runs, values, batches):
            started = time.perf_counter()
            run(steps)
            _sync(device)
            collected.append(steps * images / (time.perf_counter() - started))
    return [Timing(v, "images/s") for v in values]


def jvae_training(
    preset: Preset, source: ImageSource, device: torch.device
) -> tuple[Stepper, Callable[[int], None], dict[str, Any]]:
    """jvae's own step, as `jvae train` runs it, continuing through the data order from call to call; the
    returned state holds the step count and the last loss (on the device, read only at the end)."""
    stepper = Stepper.create(preset, source, device)
    stepper.model.train()
    state: dict[str, Any] = {"step": 0, "loss": torch.zeros(())}

    def run(n: int) -> None:
        with pages_kept():  # as the trainer keeps them; the reference runs on malloc's own settings
            for _ in range(n):
                terms, _ = stepper(state["step"])
                state["step"] += 1
                state["loss"] = terms.loss.detach()

    return stepper, run, state


def reference_training(
    preset: Preset, images: torch.Tensor, labels: torch.Tensor | None, dataset_size: int, device: torch.device
) -> tuple[Callable[[int], None], dict[str, Any]]:
    """The official loop's shape: DataLoader(TensorDataset) -> encode, sample, decode -> loss -> Adam, with
    loss.item() every step; eager fp32, and the critic step for kinds that have one. Returns the loop and
    its state (step count, last loss)."""
    torch.manual_seed(preset.train.seed)
    model = as_stock(build_model(preset)).to(device).train()  # plain nn layers
    optimizer = torch.optim.Adam(model.parameters(), lr=preset.train.lr)
    critic = build_critic(preset.loss, preset.model, device)
    tensors = (images,) if labels is None else (images, labels)
    loader = DataLoader(
        TensorDataset(*tensors), batch_size=preset.train.batch_size, shuffle=True, drop_last=True
    )
    state: dict[str, Any] = {"iterator": iter(loader), "step": 0, "loss": 0.0}
    noise = torch.Generator(device=device).manual_seed(preset.train.seed + 1)
    jitter = preset.loss.jitter()  # the same work as jvae's step: a kind's jittered batch too

    def run(n: int) -> None:
        for _ in range(n):
            try:
                batch = next(state["iterator"])
            except StopIteration:
                state["iterator"] = iter(loader)
                batch = next(state["iterator"])
            x = batch[0].to(device)
            y = batch[1].to(device) if len(batch) > 1 else None
            state["step"] += 1
            posterior = model.encode(x, y)
            latent = posterior.sample(preset.model.temperature, noise)
            moved = None if jitter is None else model.encode(jittered(x, jitter, noise), y)
            with stock():
                terms = model_objective(
                    model,
                    x,
                    posterior,
                    latent,
                    state["step"],
                    preset.loss,
                    dataset_size=dataset_size,
                    critic=critic,
                    labels=y,
                    jittered=moved,
                )
            optimizer.zero_grad()
            terms.loss.backward()
            optimizer.step()
            if critic is not None:
                critic_step(model, critic, preset, latent.detach(), y, noise, x.flip(0))
            state["loss"] = terms.loss.item()

    return run, state


def in_memory_images(
    source: ImageSource, count: int, device: torch.device, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`count` images drawn at random from the source as one float tensor on the CPU, like a loaded dataset,
    with their labels when the source has them."""
    count = min(count, len(source))
    picks = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed))[:count]
    parts = [source.images(picks[i : i + 512], device).cpu() for i in range(0, count, 512)]
    labels = labels_of(source)
    return torch.cat(parts), (None if labels is None else labels[picks].clone())


def encode_throughput(
    loaded: LoadedCheckpoint, source: ImageSource, device: torch.device, repeats: int
) -> Timing:
    """images/s of `jvae encode` on the dataset: batches of 256 encoded and written to a codes file."""
    from jvae.modeling.codes import CodeWriter
    from jvae.use.inference import encode_dataset

    count = min(len(source), 4096)
    values = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(repeats + 1):
            writer = CodeWriter(
                Path(folder) / f"codes{i}.npz", loaded.model.continuous, loaded.model.discrete
            )
            started = time.perf_counter()
            encode_dataset(loaded, source, "bench", writer, device, limit=count)
            writer.close()
            _sync(device)
            if i:  # the first pass is warm-up
                values.append(count / (time.perf_counter() - started))
    return Timing(values, "images/s")


def metrics_seconds(loaded: LoadedCheckpoint, path: Path, source: ImageSource, device: torch.device) -> float:
    """Seconds of `jvae evaluate --fast` (every metric the dataset supports, a tenth of the samples)."""
    from jvae.evaluation import evaluate

    started = time.perf_counter()
    evaluate(loaded, path, source, device, fast=True)
    _sync(device)
    return time.perf_counter() - started


def run_bench(
    preset: Preset,
    preset_name: str,
    source: ImageSource,
    device: torch.device,
    *,
    steps: int = 50,
    repeats: int = 5,
    warmup: int = 10,
    with_encode: bool = True,
    with_metrics: bool = True,
    status: Callable[[str], None] | None = None,
) -> BenchReport:
    say = status or (lambda text: None)
    batch = preset.train.batch_size
    if batch > len(source):
        raise UsageError(f"batch size {batch} is larger than the dataset ({len(source)} images)")
    say("jvae training step and reference training loop, in alternation")
    stepper, jvae_run, jvae_state = jvae_training(preset, source, device)
    images, labels = in_memory_images(source, max(BASELINE_IMAGES, batch), device, preset.train.seed)
    labels = labels if preset.model.classes else None
    reference, reference_state = reference_training(preset, images, labels, len(source), device)
    train, baseline = _interleaved([jvae_run, reference], steps, repeats, warmup, batch, device)
    precision = precision_label(preset.train.precision, device)
    setting = bench_setting(
        preset_name, preset, source, device, batch, precision,
        steps_per_repeat=steps, repeats=repeats, warmup_steps=warmup,
    )  # fmt: skip
    report = BenchReport(setting, train, baseline)
    report.losses = {
        "jvae_last": float(jvae_state["loss"]),
        "reference_last": float(reference_state["loss"]),
    }
    if with_encode or with_metrics:
        model = stepper.model.eval()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "bench.pt"
            weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            checkpoint = Checkpoint.new(preset_name, preset, weights)
            checkpoint.save(path)
            loaded = LoadedCheckpoint(path, checkpoint, preset, model)
            if with_encode:
                say("encode")
                report.encode = encode_throughput(loaded, source, device, repeats)
            if with_metrics:
                say("metrics (evaluate --fast)")
                report.metrics_seconds = metrics_seconds(loaded, path, source, device)
    return report


def format_report(report: BenchReport) -> str:
    s = report.setting
    lines = [
        f"jvae bench: {s['preset']} ({s['dataset']}, {s['image_size']}x{s['image_size']}), batch {s['batch_size']}, "
        f"{s['device']} with {s['threads']} threads, jvae in {s['precision']}",
        f"{'':<28}{'median':>10}{'min':>10}{'max':>10}",
    ]

    def row(label: str, timing: Timing) -> str:
        return f"{label:<28}{timing.median:>10.1f}{min(timing.values):>10.1f}{max(timing.values):>10.1f}  {timing.unit}"

    lines.append(row("train: jvae step", report.train))
    lines.append(row("train: reference loop", report.baseline))
    lines.append(f"{'train: jvae / reference':<28}{report.ratio:>10.2f}x")
    if report.encode is not None:
        lines.append(row("encode", report.encode))
    if report.metrics_seconds is not None:
        lines.append(f"{'metrics (evaluate --fast)':<28}{report.metrics_seconds:>10.1f}  s")
    return "\n".join(lines)


@dataclass
class StackReport:
    """K stacked models against one model at a time and the reference loop, all in images/s in total."""

    setting: dict[str, Any]
    stacked: Timing
    single: Timing
    baseline: Timing

    def as_dict(self) -> dict[str, Any]:
        return {
            "setting": self.setting,
            "stacked": self.stacked.summary(),
            "single": self.single.summary(),
            "baseline": self.baseline.summary(),
            "stacked_over_single": self.stacked.median / self.single.median,
            "stacked_over_baseline": self.stacked.median / self.baseline.median,
            "single_over_baseline": self.single.median / self.baseline.median,
        }


def run_stack_bench(
    preset: Preset,
    preset_name: str,
    source: ImageSource,
    device: torch.device,
    models: int,
    *,
    steps: int = 20,
    repeats: int = 5,
    warmup: int = 5,
    status: Callable[[str], None] | None = None,
    engine: str | None = None,
) -> StackReport:
    """images/s of `models` models of `preset` (seeds 0..K-1) trained as one stack (`jvae train --seeds`),
    of one jvae run (K runs one after another train at this rate), and of the reference loop, in alternation.
    """
    from jvae.training.stacking import stack_steps

    say = status or (lambda text: None)
    batch = preset.train.batch_size
    if batch > len(source):
        raise UsageError(f"batch size {batch} is larger than the dataset ({len(source)} images)")
    presets = [with_seed(preset, seed) for seed in range(models)]
    say(f"{models} stacked models, one model, and the reference loop, in alternation")
    stacker = stack_steps(presets, source, device, engine)
    position = {"step": 0}

    def stacked(n: int) -> None:
        with pages_kept():
            for _ in range(n):
                stacker.step_members(position["step"])
                position["step"] += 1

    single_stepper, single, _ = jvae_training(preset, source, device)
    images, labels = in_memory_images(source, max(BASELINE_IMAGES, batch), device, preset.train.seed)
    reference, _ = reference_training(
        preset, images, labels if preset.model.classes else None, len(source), device
    )
    try:
        timings = _interleaved(
            [stacked, single, reference], steps, repeats, warmup, [models * batch, batch, batch], device
        )
    finally:
        stacker.close()
    precision = precision_label(preset.train.precision, device)
    setting = bench_setting(
        preset_name, preset, source, device, batch, precision, models=models, engine=stacker.engine,
        steps_per_repeat=steps, repeats=repeats, warmup_steps=warmup,
    )  # fmt: skip
    return StackReport(setting, *timings)


def format_stack_report(report: StackReport) -> str:
    s = report.setting
    figures = report.as_dict()
    lines = [
        f"jvae bench --stack {s['models']}: {s['preset']} ({s['dataset']}, {s['image_size']}x{s['image_size']}), "
        f"batch {s['batch_size']} per model, {s['device']} with {s['threads']} threads, jvae in {s['precision']}, "
        f"engine {s['engine']}",
        f"{'images/s in total':<34}{'median':>10}{'min':>10}{'max':>10}",
    ]
    for label, timing in (
        (f"{s['models']} stacked models", report.stacked),
        (f"{s['models']} single runs, one after another", report.single),
        ("reference loop", report.baseline),
    ):
        lines.append(
            f"{label:<34}{timing.median:>10.1f}{min(timing.values):>10.1f}{max(timing.values):>10.1f}"
        )
    lines.append(f"{'stacked / single runs':<34}{figures['stacked_over_single']:>10.2f}x")
    lines.append(f"{'stacked / reference':<34}{figures['stacked_over_baseline']:>10.2f}x")
    lines.append(f"{'single run / reference':<34}{figures['single_over_baseline']:>10.2f}x")
    return "\n".join(lines)
