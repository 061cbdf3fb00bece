"""What each discrete variable carries, read from its category probabilities alone (no labels): the mutual
information I(x; c) between image and category, and the perplexity of category use; also watched while
training, where the collapse check reads it.

JointVAE's discrete KL from uniform is I(x; c) + KL(q_bar(c) || uniform) (see `jvae.modeling.aggregate`), so the
KL a run logs cannot tell a constant confident code (I = 0) from one that carries log K nats; these can.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from jvae.data.sources import ImageSource
from jvae.evaluation.context import Evaluation
from jvae.evaluation.registry import Metric, Training, first_paragraph
from jvae.modeling.latents import encode_from
from jvae.modeling.model import JointVAE

IMAGES = 4000  # images the code is read on: the aggregate posterior of 10 categories to about 1e-3
BATCH = 500


def code_information(probs: np.ndarray) -> tuple[float, float]:
    """I(x; c) = H(q_bar(c)) - mean_x H(q(c|x)) in nats, and the perplexity exp H(q_bar(c)) (1 when every
    image falls in one category, K when the K categories are used equally), of category probabilities
    (N, K) with q_bar their mean over the images."""
    probs = np.asarray(probs, dtype=np.float64)
    aggregate = probs.mean(axis=0)
    marginal_entropy = float(-(aggregate * np.log(np.clip(aggregate, 1e-300, None))).sum())
    conditional = float(-(probs * np.log(np.clip(probs, 1e-300, None))).sum(axis=1).mean())
    return max(marginal_entropy - conditional, 0.0), math.exp(marginal_entropy)


@torch.no_grad()
def discrete_code(
    model: JointVAE, source: ImageSource, device: torch.device, seed: int, count: int = IMAGES
) -> dict[str, list[float]]:
    """Each discrete variable's I(x; c) and perplexity on `count` images drawn with `seed` (all of a smaller
    source); the model's mode is left as it was."""
    was_training = model.training
    model.eval()
    try:
        rng = np.random.RandomState(seed)
        picks = rng.choice(len(source), size=min(count, len(source)), replace=False)
        probs: list[list[np.ndarray]] = [[] for _ in model.discrete]
        for start in range(0, len(picks), BATCH):
            indices = torch.from_numpy(np.sort(picks[start : start + BATCH]))
            posterior = encode_from(model, source, indices, device)
            for i, p in enumerate(posterior.probs):
                probs[i].append(p.float().cpu().numpy())
    finally:
        model.train(was_training)
    read = [code_information(np.concatenate(p)) for p in probs]
    return {"information": [i for i, _ in read], "perplexity": [p for _, p in read]}


def _compute(evaluation: Evaluation) -> dict[str, float]:
    read = discrete_code(evaluation.model, evaluation.source, evaluation.device, evaluation.seed + 5)
    figures: dict[str, float] = {}
    for i, (information, perplexity) in enumerate(zip(read["information"], read["perplexity"])):
        figures[f"d{i}_information"] = information
        figures[f"d{i}_perplexity"] = perplexity
    return figures


def _while_training(training: Training) -> dict[str, Any] | None:
    """On the held-out split where the dataset publishes one, else on a sample of the training images."""
    read = discrete_code(training.model, training.held_out or training.source, training.device, training.seed)
    return {"code_information": read["information"], "code_perplexity": read["perplexity"]}


METRIC = Metric(
    "discrete_code",
    "discrete code (no labels)",
    first_paragraph(code_information) + " Per discrete variable, on 4000 images.",
    _compute,
    listed=12,
    reported=92,
    applies=lambda model: bool(model.discrete),
    during_training=_while_training,
)
