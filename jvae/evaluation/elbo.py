"""The held-out ELBO terms: how well the model reconstructs images it did not train on (or a fixed draw of
the ones it did), and how much its code carries."""

from __future__ import annotations

from jvae.evaluation.context import Evaluation
from jvae.evaluation.heldout import elbo_on, heldout_pass
from jvae.evaluation.registry import Metric, first_paragraph


def _compute(evaluation: Evaluation) -> dict:
    return evaluation.shared(heldout_pass).terms


METRIC = Metric(
    "elbo",
    "held-out ELBO terms",
    first_paragraph(elbo_on),
    _compute,
    listed=100,
    reported=10,
    headline="elbo",
    progress="ELBO terms and per-unit KL on held-out images",
)
