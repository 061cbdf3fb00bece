"""Early selection: train every seed of a stack to an early step, rank them there by a criterion, and train only
the best to the end, so that the seeds the criterion already ranks low cost a fraction of a full run.

The stopped runs keep their checkpoint at the early step (any of them can be trained on later with `jvae train
--resume FOLDER`); the stack folder's `early-selection.json` records the step, the criterion, every run's figures
and which were kept, so that `jvae train --resume STACK` trains on the kept ones only. Where more than one is
kept, the criterion chooses again among them at the end.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from jvae.base.errors import JvaeError, UsageError
from jvae.base.files import write_text
from jvae.runs import runplan
from jvae.runs.runplan import RunPlan
from jvae.studies.selection import Selection, select, select_groups, write_selections
from jvae.training.run_writer import TrainResult

RECORD = "early-selection.json"


@dataclass
class EarlyOutcome:
    """What a selecting training call did: every run's last result (a stopped run's is its pause), the early
    ranking, the final one where several were kept, and the share of the stack's steps it did not train."""

    results: list[TrainResult]
    early: Selection | None = None
    final: Selection | None = None
    kept: list[str] = field(default_factory=list)
    step: int = 0
    saved: float = 0.0

    @property
    def interrupted(self) -> bool:
        return any(r.interrupted and not r.paused for r in self.results)

    @property
    def selected(self) -> str | None:
        if self.final is not None:
            return self.final.selected
        return self.kept[0] if len(self.kept) == 1 else None


def early_step(total: int, at: float) -> int:
    """The step `at` (a fraction of the schedule, or a step count from 1 up) stands for."""
    step = int(round(total * at)) if at < 1 else int(at)
    if not 1 <= step < total:
        raise UsageError(f"--select-at {at:g} is step {step}; an early step lies between 1 and {total - 1}")
    return step


def planned_steps(plan: RunPlan, data_path: str | None) -> int:
    from jvae.data import open_dataset
    from jvae.modeling.schedules import total_steps

    preset = plan.runs[0].preset
    if preset.train.steps is not None:
        return preset.train.steps
    return total_steps(preset, len(open_dataset(preset.data, data_path)))


def read_record(stack_dir: Path) -> dict | None:
    path = stack_dir / RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("kept"), list):
            raise ValueError("no list of kept runs")
    except (ValueError, OSError) as exc:
        raise JvaeError(f"{path}: not an early-selection record jvae wrote ({exc})") from None
    return record


def train_selecting(
    plan: RunPlan,
    criterion: str,
    at: float,
    keep: int,
    *,
    train: Callable[..., list[TrainResult]],
    device: torch.device,
    data_path: str | None = None,
) -> EarlyOutcome:
    """Train `plan` (a stack) with early selection. `train(plan, pause_at=...)` trains a plan (the trainer's
    `train_plan` with the caller's callbacks and stop request bound)."""
    assert plan.stack_dir is not None
    stack_dir = plan.stack_dir
    if not 1 <= keep < len(plan.runs):
        raise UsageError(f"--keep {keep}: keep at least 1 and fewer than the stack's {len(plan.runs)} runs")
    total = planned_steps(plan, data_path)
    record = read_record(stack_dir) if plan.resume else None
    early: Selection | None = None
    if record is None:
        step = early_step(total, at)
        results = train(plan, pause_at=step)
        if not all(r.paused for r in results):
            return EarlyOutcome(results, step=step)
        early = select(plan.run_dirs, data_path, device, criterion=criterion)
        early.step = step  # read from the checkpoints the pause wrote
        kept = [early.runs[k] for k in early.ranking[:keep]]
        write_selections(stack_dir, [(plan.run_dirs, early)], link=keep == 1)
        write_text(
            stack_dir / RECORD,
            json.dumps({"step": step, "total": total, "kept": kept, "selection": early.to_dict()}, indent=2)
            + "\n",
        )
    else:
        step, kept = int(record["step"]), [str(name) for name in record["kept"]]
        results = []
    by_name = {run.run_dir.name: run for run in plan.runs}
    missing = [name for name in kept if name not in by_name]
    if missing:
        raise JvaeError(f"{stack_dir / RECORD}: keeps {missing[0]}, which is not one of the stack's runs")
    kept_runs = tuple(by_name[name] for name in kept)
    if len(kept_runs) == 1:
        onward = runplan.RunPlan(plan.preset_name, kept_runs, resume=True)
    else:
        onward = replace(plan, runs=kept_runs, resume=True, stack_file=None, within=True)
    finished = train(onward, pause_at=None)
    merged = {r.run_dir.name: r for r in results}
    merged.update({r.run_dir.name: r for r in finished})
    ordered = [merged[run.run_dir.name] for run in plan.runs if run.run_dir.name in merged]
    saved = (len(plan.runs) - len(kept)) * (total - step) / (len(plan.runs) * total)
    outcome = EarlyOutcome(ordered, early, None, kept, step, saved)
    if outcome.interrupted or len(kept) == 1:
        return outcome
    groups = select_groups(stack_dir, [r.run_dir for r in kept_runs], data_path, device, True, criterion)
    outcome.final = groups[0][1]
    return outcome


def resume_criterion(stack_dir: Path) -> tuple[str, float, int] | None:
    """The criterion, early step and number kept a stack's early selection used, where it has one."""
    record = read_record(stack_dir)
    if record is None:
        return None
    return str(record["selection"]["criterion"]), float(record["step"]), len(record["kept"])
