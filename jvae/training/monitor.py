"""Looking at a model while it trains: every `train.eval_every` steps, the ELBO terms on a fixed sample of
images, a traversal snapshot, and whatever each metric of the registry asks to watch (the label accuracy of
each discrete variable, on the test split where the dataset publishes one, so a recipe can be judged from its
curve; MIG with `train.eval_mig`).

Everything here draws from its own seeded generators and restores the model's training mode, so a run with
evaluations trains exactly the weights of a run without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from jvae.base.media import grid, to_uint8
from jvae.data.capabilities import labels_of
from jvae.data.registry import DATASETS, open_dataset
from jvae.data.sources import ImageSource
from jvae.evaluation.heldout import elbo_on
from jvae.evaluation.registry import METRICS, Training
from jvae.modeling.latents import UnitKL, encode_from, prior_mode, ranked_units
from jvae.modeling.model import JointVAE
from jvae.modeling.presets import Preset
from jvae.runs import runfolder
from jvae.use.figures import traversal_grid, unit_label, write_ranked_traversal

EVAL_SEED_OFFSET = 104729  # the evaluation sample's seed, apart from every seed training draws from
SNAPSHOT_UNITS = 6  # continuous units in a snapshot, ranked by KL
RECONSTRUCTIONS = 8


def held_out_source(preset: Preset, data_path: str | None) -> ImageSource | None:
    """The labelled test split that label accuracy is read on during training, where the dataset publishes
    one and the run trains on the rest (MNIST's 10000 test digits); None elsewhere."""
    entry = DATASETS[preset.data.dataset]
    if not (entry.splits and entry.labels) or preset.data.split == "test":
        return None
    test = open_dataset(preset.data.model_copy(update={"split": "test"}), data_path)
    return test if labels_of(test) is not None else None


def evaluate_now(
    model: JointVAE,
    preset: Preset,
    source: ImageSource,
    device: torch.device,
    step: int,
    run_dir: Path,
    held_out: ImageSource | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The `split: "eval"` record of metrics.jsonl at `step`, and the pictures trackers show. `held_out`:
    the labelled test split label accuracy is read on (else a sample of the training images)."""
    was_training = model.training
    model.eval()
    seed = preset.train.seed + EVAL_SEED_OFFSET
    try:
        terms, per_unit = elbo_on(model, preset, source, device, preset.train.eval_images, seed)
        record: dict[str, Any] = {"step": step, "split": "eval", **terms}
        record["kl_cont"] = [per_unit[str(i)] for i in range(model.continuous)]
        record["kl_disc"] = [per_unit[f"d{i}"] for i in range(len(model.discrete))]
        training = Training(model, preset, source, device, seed, held_out)
        for metric in METRICS.values():
            watched = metric.during_training(training) if metric.during_training is not None else None
            record.update(watched or {})
        kl = UnitKL(record["kl_cont"], record["kl_disc"])
        snapshot = runfolder.snapshot(run_dir, step)
        snapshot.parent.mkdir(exist_ok=True)
        with torch.no_grad():
            write_ranked_traversal(model, source, device, kl, snapshot, seed, max_continuous=SNAPSHOT_UNITS)
            images = {
                "traversal": _traversal_picture(model, kl),
                "reconstruction": _reconstructions(model, source, device, seed),
            }
        record["snapshot"] = str(snapshot.relative_to(run_dir))
    finally:
        model.train(was_training)
    return record, images


def _traversal_picture(model: JointVAE, kl: UnitKL) -> np.ndarray:
    """A row per ranked unit, a column per value, from the prior mode (class 0 for conditional models)."""
    chosen = model.default_class
    if model.classes and chosen is None:
        model.default_class = 0
    try:
        ranked = ranked_units(model, kl)
        units = ranked[: min(SNAPSHOT_UNITS, model.continuous)] + ranked[model.continuous :]
        labels = [unit_label(unit, {}, kl) for unit in units]
        bases = prior_mode(model, 1, next(model.parameters()).device)
        return traversal_grid(model, bases, units, 8, labels, scale=2 if model.image_size <= 32 else 1)
    finally:
        model.default_class = chosen


def _reconstructions(model: JointVAE, source: ImageSource, device: torch.device, seed: int) -> np.ndarray:
    picks = torch.randint(len(source), (RECONSTRUCTIONS,), generator=torch.Generator().manual_seed(seed))
    originals = source.images(picks, device)
    posterior = encode_from(model, source, picks, device)
    rebuilt = model.decode(posterior.mode())
    tiles = to_uint8(torch.stack([originals, rebuilt]))  # (2, N, H, W, 3)
    return grid(tiles, scale=2 if model.image_size <= 32 else 1)
