"""The collapse check: once, at a step the preset names (by default where the discrete capacity stops rising),
each run reads what its discrete variables carry on held-out images and says when a code has collapsed.

JointVAE's discrete capacity can be met by a constant confident code, every image in one category: its KL from
uniform is log K while it carries nothing (see `jvae.modeling.aggregate`). A variable is called collapsed when the
information it carries, I(x; c), is below `train.collapse_information` of its share of the capacity at the
check, or when it uses fewer than `train.collapse_perplexity` categories. The run's folder keeps every check
in collapse.json; with `train.on_collapse = "restart"` a collapsed run is trained again from another seed
(`trainer.train_plan`), its collapsed attempt kept under collapsed/seed-N/.

Measured with `jvae evaluate --metrics discrete_code`: the released MNIST model carries 2.27 of its 2.30
nats on the 10000 test digits (9.95 categories used), the released dSprites model 0.79 of 1.1 nats on
generated sprites (2.27 used); the quickstart's seed 0 and the test suite's sprites model, trained with the
paper's objective, 0.000 (1.00 used). The default thresholds (a quarter of the capacity, 1.5 categories)
lie far from both groups.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from jvae.base.errors import RunDirError
from jvae.base.files import write_text
from jvae.data.sources import ImageSource
from jvae.evaluation.discrete_code import discrete_code
from jvae.modeling.model import JointVAE
from jvae.modeling.presets import Preset
from jvae.runs import runfolder

CHECK_IMAGES = 2000  # held-out images the check reads: I(x; c) of 10 categories to about 0.01 nats
CHECK_SEED_OFFSET = 7877  # the check's image sample, apart from every seed training draws from
RECORD_MAX_BYTES = 1 << 20  # collapse.json is a few hundred bytes a check; a larger one is not ours


@dataclass(frozen=True)
class Finding:
    """One check of one run: what each discrete variable carries against its share of the capacity."""

    seed: int
    step: int
    information: list[float]  # I(x; c) per variable, nats
    capacity: list[float]  # each variable's share of the discrete capacity at the check, nats
    perplexity: list[float]  # exp H(q_bar(c)) per variable
    collapsed_variables: list[int]
    action: str = "warned"  # warned | restarted | kept (no restarts left)

    @property
    def collapsed(self) -> bool:
        return bool(self.collapsed_variables)

    def line(self) -> str:
        """What the log says, in one line."""
        parts = [
            f"d{i} I(x; c) {info:.3f} of {cap:.3f} nats, {perp:.2f} categories used"
            for i, (info, cap, perp) in enumerate(zip(self.information, self.capacity, self.perplexity))
        ]
        verdict = (
            f"collapsed ({', '.join(f'd{i}' for i in self.collapsed_variables)})"
            if self.collapsed
            else "not collapsed"
        )
        return f"collapse check at step {self.step} (seed {self.seed}): {verdict}: {'; '.join(parts)}"


def check_step(preset: Preset, total: int) -> int | None:
    """The step the check runs at in a `total`-step run, or None where there is nothing to check."""
    train = preset.train
    if not train.collapse_check or not preset.model.discrete:
        return None
    if train.collapse_step is not None:
        return train.collapse_step if train.collapse_step <= total else None
    schedule = getattr(preset.loss, "discrete_capacity", None)
    if schedule is None or schedule.steps > total:
        return None  # a run that ends before its capacity stops rising is checked only where it says so
    return schedule.steps


def capacity_shares(preset: Preset, step: int) -> list[float]:
    """Each discrete variable's share of the discrete capacity at `step`, in proportion to its log K (its
    largest possible information); log K itself for kinds without a discrete capacity."""
    log_k = [math.log(k) for k in preset.model.discrete]
    schedule = getattr(preset.loss, "discrete_capacity", None)
    if schedule is None:
        return log_k
    total = schedule.capacity(step, ceiling=sum(log_k))
    return [total * value / sum(log_k) for value in log_k]


def examine(model: JointVAE, preset: Preset, source: ImageSource, device: torch.device, step: int) -> Finding:
    """Check `model` at `step` on a seeded sample of `source` (held-out images where the dataset has them)."""
    seed = preset.train.seed
    read = discrete_code(model, source, device, seed + CHECK_SEED_OFFSET, CHECK_IMAGES)
    shares = capacity_shares(preset, step)
    train = preset.train
    collapsed = [
        i
        for i, (info, share, perp) in enumerate(zip(read["information"], shares, read["perplexity"]))
        if info < train.collapse_information * share or perp < train.collapse_perplexity
    ]
    return Finding(seed, step, read["information"], shares, read["perplexity"], collapsed)


# ----------------------------------------------------------------------------------------------- the record


def record_path(run_dir: Path) -> Path:
    return run_dir / runfolder.COLLAPSE_RECORD


def read_record(run_dir: Path) -> list[dict[str, Any]]:
    """The checks collapse.json holds, oldest first; none where there is no file."""
    path = record_path(run_dir)
    if not path.is_file():
        return []
    if path.stat().st_size > RECORD_MAX_BYTES:
        raise RunDirError(f"{path} is larger than a collapse record can be; move it away")
    try:
        body = json.loads(path.read_text())
        checks = body["checks"]
        if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
            raise TypeError
    except (ValueError, KeyError, TypeError) as error:
        raise RunDirError(f"{path} is not a collapse record ({error}); move it away") from None
    return checks


def write_record(run_dir: Path, finding: Finding) -> None:
    """Add `finding` to collapse.json (replacing a check of the same seed and step, as a resumed run that
    passes the check again), with the seed the folder now holds."""
    checks = [
        check
        for check in read_record(run_dir)
        if (check.get("seed"), check.get("step")) != (finding.seed, finding.step)
    ]
    checks.append(asdict(finding))
    body = {"kept_seed": finding.seed, "checks": checks}
    write_text(record_path(run_dir), json.dumps(body, indent=1) + "\n")


def restarts_taken(run_dir: Path) -> int:
    return sum(1 for check in read_record(run_dir) if check.get("action") == "restarted")


def set_action(run_dir: Path, finding: Finding, action: str) -> Finding:
    """The finding with its action decided, written to the record."""
    decided = Finding(**{**asdict(finding), "action": action})
    write_record(run_dir, decided)
    return decided


def put_attempt_aside(run_dir: Path, seed: int) -> None:
    """Move a collapsed attempt's files to collapsed/seed-N/ so the folder can train the next seed: nothing
    the attempt wrote is deleted."""
    attempts = run_dir / runfolder.COLLAPSED_ATTEMPTS
    attempt, again = attempts / f"seed-{seed}", 1
    while attempt.exists():  # the same seed again: a restart interrupted and run once more
        attempt, again = attempts / f"seed-{seed}.{again}", again + 1
    attempt.mkdir(parents=True)
    for entry in list(run_dir.iterdir()):
        if entry.name not in runfolder.RESTART_KEEPS:
            entry.rename(attempt / entry.name)


def next_seed(seed: int, taken: set[int]) -> int:
    """The first seed after `seed` that no run of the plan holds or has tried."""
    candidate = seed + 1
    while candidate in taken:
        candidate += 1
    return candidate
