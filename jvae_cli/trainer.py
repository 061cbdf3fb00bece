"""The training loop: preset in, run directory out (checkpoint, metrics log, traversal GIF).

It never prints: progress goes to a callback, and an external stop request (the CLI's signal handler) ends
the loop after the current step with a checkpoint written. Everything random (initialisation, data order,
sampling noise) comes from the preset's seed and is saved in the checkpoint, so a resumed run continues the
exact sequence of an uninterrupted one on the same device.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from jvae_cli.checkpoint import atomic_torch_save, build_model, new_payload, read_checkpoint
from jvae_cli.critics import Critic, build_critic
from jvae_cli.data import open_dataset
from jvae_cli.devices import resolve_device
from jvae_cli.errors import JvaeError, RunDirError
from jvae_cli.figures import write_ranked_traversal
from jvae_cli.latents import labels_for, measure_unit_kl
from jvae_cli.model import JointVAE
from jvae_cli.presets import Preset, preset_to_toml
from jvae_cli.steps import critic_step, vae_step

CHECKPOINT = "ckpt.pt"
METRICS = "metrics.jsonl"
PRESET_FILE = "preset.toml"
TRAVERSAL = "traversals.gif"
TRAVERSAL_FRAMES = 10
TRAVERSAL_ENCODED = 4  # columns after the prior mode
SECOND_ORDER = 7919  # seed offset of the data order of FactorVAE's second batch


@dataclass
class TrainEvent:
    """What the loop reports: `start`, `log` (a metrics record), `checkpoint`, `status` or `end`."""

    kind: str
    step: int
    total_steps: int
    record: dict[str, Any] = field(default_factory=dict)
    message: str = ""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    total_steps: int
    interrupted: bool
    seconds: float
    images_per_sec: float
    traversal: Path | None


Callback = Callable[[TrainEvent], None]


def _epoch_order(seed: int, epoch: int, size: int) -> torch.Tensor:
    """The data order of one epoch, a pure function of (seed, epoch) so resuming needs no saved order."""
    generator = torch.Generator().manual_seed(seed * (1 << 20) + epoch)
    return torch.randperm(size, generator=generator)


def total_steps(preset: Preset, dataset_size: int) -> int:
    if preset.train.steps is not None:
        return preset.train.steps
    steps_per_epoch = max(dataset_size // preset.train.batch_size, 1)
    return steps_per_epoch * (preset.train.epochs or 1)


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
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


class _Interval:
    """Sums of the loss terms since the last log line, kept on the device to avoid a host sync per step."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.sums: dict[str, torch.Tensor] = {}
        self.started = time.perf_counter()
        self.excluded = 0.0

    def add(self, **terms: torch.Tensor) -> None:
        for key, value in terms.items():
            value = value.detach()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.count += 1

    def means(self) -> dict[str, Any]:
        return {key: (value / self.count).tolist() for key, value in self.sums.items()}

    def images_per_sec(self, batch_size: int) -> float:
        seconds = time.perf_counter() - self.started - self.excluded
        return self.count * batch_size / seconds if seconds > 0 else 0.0


@dataclass
class _State:
    model: JointVAE
    optimizer: torch.optim.Optimizer
    noise: torch.Generator
    step: int
    critic: Critic | None = None


def _payload(
    preset_name: str, preset: Preset, state: _State, total: int, unit_kl: dict | None
) -> dict[str, Any]:
    payload = new_payload(preset_name, preset)
    payload.update(
        model={k: v.detach().cpu() for k, v in state.model.state_dict().items()},
        optimizer=state.optimizer.state_dict(),
        step=state.step,
        total_steps=total,
        rng={
            "torch": torch.get_rng_state(),
            "noise": state.noise.get_state().cpu(),
            "device": state.noise.device.type,
        },
        unit_kl=unit_kl,
    )
    if state.critic is not None:
        payload["critic"] = state.critic.state_dict()
    return payload


def train(
    preset: Preset,
    preset_name: str,
    run_dir: Path,
    *,
    device: str = "auto",
    data_path: str | None = None,
    resume: bool = False,
    callback: Callback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train `preset` into `run_dir`, or continue the run there when `resume` is set."""
    emit = callback or (lambda event: None)
    stop = should_stop or (lambda: False)
    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT
    resumed: dict[str, Any] | None = None
    if resume:
        if not ckpt_path.is_file():
            raise RunDirError(f"nothing to resume: {ckpt_path} does not exist")
        resumed = read_checkpoint(ckpt_path)
    elif ckpt_path.exists():
        raise RunDirError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick --out")
    elif run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise RunDirError(f"{run_dir} exists and is not an empty folder; pick a new or empty --out")

    torch_device = resolve_device(device)
    source = open_dataset(preset.data, data_path)
    if len(source) < preset.train.batch_size:
        raise JvaeError(
            f"the dataset has {len(source)} images, fewer than one batch of {preset.train.batch_size}"
        )
    total = total_steps(preset, len(source))
    steps_per_epoch = max(len(source) // preset.train.batch_size, 1)

    torch.manual_seed(preset.train.seed)
    model = build_model(preset).to(torch_device)
    optimizer = torch.optim.Adam(model.parameters(), lr=preset.train.lr)
    noise = torch.Generator(device=torch_device).manual_seed(preset.train.seed + 1)
    state = _State(model, optimizer, noise, step=0, critic=build_critic(preset, torch_device))
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        if state.critic is not None:
            if "critic" not in resumed:
                raise RunDirError(f"{ckpt_path} has no {preset.loss.kind} critic state to resume")
            state.critic.load_state_dict(resumed["critic"])
        torch.set_rng_state(resumed["rng"]["torch"])
        state.step = int(resumed["step"])
        saved_on = resumed["rng"].get("device", "cpu")
        if saved_on == torch_device.type:
            noise.set_state(resumed["rng"]["noise"])
        else:  # generator states do not move between device types; continue from a seed tied to the step
            noise.manual_seed(preset.train.seed + 1 + state.step)
            message = (
                f"resuming a {saved_on} run on {torch_device.type}: sampling noise is reseeded from the step"
            )
            emit(TrainEvent("status", state.step, 0, message=message))
        _trim_metrics(run_dir / METRICS, state.step)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / PRESET_FILE).write_text(preset_to_toml(preset))

    def save(unit_kl: dict | None = None) -> None:
        atomic_torch_save(_payload(preset_name, preset, state, total, unit_kl), ckpt_path)
        emit(TrainEvent("checkpoint", state.step, total, message=str(ckpt_path)))

    emit(TrainEvent("start", state.step, total, message=f"{source.description} on {torch_device}"))
    skipped = getattr(source, "skipped", [])
    if skipped:
        listed = "; ".join(str(path) for path, _ in skipped[:5]) + ("; ..." if len(skipped) > 5 else "")
        emit(
            TrainEvent(
                "status", state.step, total, message=f"left out {len(skipped)} unreadable image(s): {listed}"
            )
        )
    interval = _Interval()
    batch_size = preset.train.batch_size
    order_epoch, order, second = -1, torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    started = time.perf_counter()
    start_step = state.step
    interrupted = False
    model.train()
    with open(run_dir / METRICS, "a", encoding="utf-8") as log:
        while state.step < total:
            if stop():
                interrupted = True
                break
            epoch, position = divmod(state.step, steps_per_epoch)
            if epoch != order_epoch:
                order_epoch, order = epoch, _epoch_order(preset.train.seed, epoch, len(source))
                if preset.loss.kind == "factor-vae":
                    second = _epoch_order(preset.train.seed + SECOND_ORDER, epoch, len(source))
            picks = order[position * batch_size : (position + 1) * batch_size]
            x = source.images(picks, torch_device)
            labels = labels_for(model, source, picks)
            labels = None if labels is None else labels.to(torch_device)
            state.step += 1
            terms, latent = vae_step(
                model, optimizer, x, labels, state.step, preset, noise, len(source), state.critic
            )
            extra = dict(terms.extra)
            if state.critic is not None:
                other = None
                if len(second):
                    other = source.images(
                        second[position * batch_size : (position + 1) * batch_size], torch_device
                    )
                extra["critic_loss"] = critic_step(model, state.critic, preset, latent, labels, noise, other)
            interval.add(
                loss=terms.loss, recon=terms.recon, kl_cont=terms.kl_cont, kl_disc=terms.kl_disc, **extra
            )

            if state.step % preset.train.log_every == 0 or state.step == total:
                record = {"step": state.step, "epoch": state.step / steps_per_epoch, **interval.means()}
                record.update(
                    capacity_cont=terms.capacity_cont,
                    capacity_disc=terms.capacity_disc,
                    images_per_sec=round(interval.images_per_sec(batch_size), 1),
                )
                if not math.isfinite(record["loss"]):
                    last = (
                        f"the last good checkpoint is {ckpt_path}"
                        if ckpt_path.exists()
                        else "no checkpoint was written"
                    )
                    raise JvaeError(
                        f"training diverged at step {state.step} (loss is {record['loss']}); try a lower train.lr; {last}"
                    )
                log.write(json.dumps(record) + "\n")
                log.flush()
                emit(TrainEvent("log", state.step, total, record=record))
                interval.reset()
            if state.step % preset.train.checkpoint_every == 0 and state.step < total:
                paused = time.perf_counter()
                save()
                interval.excluded += time.perf_counter() - paused

    seconds = time.perf_counter() - started
    images_per_sec = (state.step - start_step) * batch_size / seconds if seconds > 0 else 0.0
    if interrupted:
        save()
        return TrainResult(run_dir, state.step, total, True, seconds, images_per_sec, None)

    emit(TrainEvent("status", state.step, total, message="measuring unit KL and drawing traversals"))
    kl = measure_unit_kl(model, source, torch_device, seed=preset.train.seed)
    save(kl.as_dict())
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
    emit(TrainEvent("end", state.step, total, message=str(traversal)))
    return TrainResult(run_dir, state.step, total, False, seconds, images_per_sec, traversal)
