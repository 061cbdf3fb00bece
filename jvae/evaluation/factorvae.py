"""The FactorVAE score (Kim & Mnih 2018), to disentanglement_lib's definition and defaults."""

from __future__ import annotations

import numpy as np
import torch

from jvae.data.capabilities import GroundTruth
from jvae.evaluation.context import Evaluation
from jvae.evaluation.registry import Metric, first_paragraph
from jvae.evaluation.sampling import EncodeFn, encode_many


def factorvae_score(
    encode: EncodeFn,
    dataset: GroundTruth,
    *,
    seed: int = 0,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_std: float = 0.05,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Kim & Mnih's score: a majority-vote classifier from argmin normalised variance to the fixed factor."""
    rng = np.random.RandomState(seed)
    factors = dataset.sample_factors(num_variance_estimate, rng)
    codes = encode_many(encode, dataset, factors, device)
    global_var = np.var(codes, axis=0, ddof=1)
    active = np.sqrt(global_var) >= prune_std
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    sizes = list(dataset.factor_sizes)

    def votes(count: int) -> np.ndarray:
        table = np.zeros((len(sizes), int(active.sum())), dtype=np.int64)
        for _ in range(count):
            index = rng.randint(len(sizes))
            batch = dataset.sample_factors(batch_size, rng)
            batch[:, index] = batch[0, index]
            local = np.var(
                np.asarray(encode(dataset.observations(batch, torch.device(device)))), axis=0, ddof=1
            )
            table[index, np.argmin(local[active] / global_var[active])] += 1
        return table

    train, evaluation = votes(num_train), votes(num_eval)
    return {
        "train_accuracy": majority_vote_accuracy(train, train),
        "eval_accuracy": majority_vote_accuracy(train, evaluation),
        "num_active_dims": int(active.sum()),
    }


def majority_vote_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray) -> float:
    """Votes are (factors, dims) counts; each dim predicts the factor that most often voted for it."""
    classifier = np.argmax(train_votes, axis=0)
    columns = np.arange(train_votes.shape[1])
    return float(eval_votes[classifier, columns].sum() / eval_votes.sum())


def _compute(evaluation: Evaluation) -> dict[str, float]:
    counts = evaluation.counts
    return factorvae_score(
        evaluation.encode,
        evaluation.factors,
        seed=evaluation.seed,
        num_train=counts["num_train"],
        num_eval=counts["num_eval"],
        num_variance_estimate=counts["num_variance_estimate"],
        device=evaluation.device,
    )


METRIC = Metric(
    "factorvae",
    "FactorVAE score",
    first_paragraph(factorvae_score),
    _compute,
    listed=40,
    reported=30,
    needs=("factors",),
    headline="eval_accuracy",
    progress="FactorVAE score",
)
