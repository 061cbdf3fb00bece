"""The label-free criteria a user's model can be chosen by among runs of one setting, each scored the same way
on every run, so that which one predicts quality is a measurement (`benchmarks/selection_criteria.py`), not a
belief.

Two kinds: a run's own fit read on the same held-out images for every run (reconstruction of the posterior
mode, ELBO, what its discrete code carries), and its agreement with the other runs of its setting (UDR, and the
agreement of the discrete codes alone), for which a run is scored against each of the others and given the
median, as UDR does. Runs compared at the same step sit at the same capacities, so their reconstructions
compare like with like.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from jvae.base.errors import JvaeError
from jvae.studies import udr

if TYPE_CHECKING:
    from jvae.data.sources import ImageSource
    from jvae.modeling.checkpoint import LoadedCheckpoint

HELD_OUT_IMAGES = 2000  # the reconstruction and ELBO images: their mean to well under the seed spread
CODE_IMAGES = 4000  # as the discrete_code metric reads the code
SEED = 0


@dataclass
class Group:
    """Runs of one setting, loaded once, and the images every criterion reads them on."""

    loaded: list[LoadedCheckpoint]
    source: ImageSource  # the held-out split where the dataset publishes one, else the training images
    shared: torch.Tensor  # UDR's images, drawn from the training images
    device: torch.device
    seed: int = SEED
    _terms: dict[int, dict[str, float]] = field(default_factory=dict)

    def terms(self, k: int) -> dict[str, float]:
        """Run k's held-out reconstruction and ELBO terms (`evaluation.heldout.elbo_on`), read once."""
        if k not in self._terms:
            from jvae.evaluation.heldout import elbo_on

            item = self.loaded[k]
            item.model.eval()
            self._terms[k], _ = elbo_on(
                item.model, item.preset, self.source, self.device, HELD_OUT_IMAGES, self.seed
            )
        return self._terms[k]

    @cached_property
    def codes(self) -> list[dict[str, list[float]]]:
        from jvae.evaluation.discrete_code import discrete_code

        return [discrete_code(i.model, self.source, self.device, self.seed, CODE_IMAGES) for i in self.loaded]

    @cached_property
    def representations(self) -> list[udr.Representation]:
        from jvae.studies.selection import representation_of

        return [representation_of(item.model, self.shared, self.device) for item in self.loaded]

    @cached_property
    def udr_pairs(self) -> np.ndarray:
        """UDR_S of every ordered pair, which the `udr` criterion and the selection's record both read."""
        return udr.pairwise_scores(self.representations, "spearman")


@dataclass(frozen=True)
class Criterion:
    """One way to rank runs. `score` gives one figure per run; `higher` says which end is better."""

    name: str
    description: str
    higher: bool
    score: Callable[[Group], list[float]]
    discrete: bool = False  # reads discrete variables: refused for a model without any
    early: float | None = (
        None  # the share of the schedule where it already ranks runs as at the end (measured)
    )

    def best(self, values: list[float]) -> int:
        return int(np.argmax(values) if self.higher else np.argmin(values))


def _udr(group: Group) -> list[float]:
    return udr.run_scores(group.udr_pairs)


def joint_code(representation: udr.Representation) -> np.ndarray:
    """Every image's categories of all discrete variables as one label (one partition of the images)."""
    codes = np.zeros(len(representation.means), dtype=np.int64)
    for categories in representation.categories:
        codes = codes * (int(categories.max(initial=0)) + 1) + categories
    return codes


def code_agreement(first: np.ndarray, second: np.ndarray) -> float:
    """NMI of two partitions, 0 where either puts every image in one category: two constant codes agree
    perfectly and carry nothing, and such a run must not win."""
    if len(np.unique(first)) < 2 or len(np.unique(second)) < 2:
        return 0.0
    return udr.category_agreement(first, second)


def _agreement(group: Group) -> list[float]:
    codes = [joint_code(r) for r in group.representations]
    count = len(codes)
    pairs = np.full((count, count), np.nan)
    for i in range(count):
        for j in range(i + 1, count):
            pairs[i, j] = pairs[j, i] = code_agreement(codes[i], codes[j])
    return udr.run_scores(pairs)  # each run's median over the others, as UDR gives it


CRITERIA: dict[str, Criterion] = {
    c.name: c
    for c in (
        Criterion(
            "udr",
            "UDR_S (Duan et al. 2020): how well each unit matches one unit of the other runs",
            True,
            _udr,
        ),
        Criterion(
            "agreement",
            "the median NMI of the run's discrete code with each other run's on the same images",
            True,
            _agreement,
            discrete=True,
        ),
        Criterion(
            "elbo",
            "held-out ELBO per image (sampled code)",
            True,
            lambda g: [g.terms(k)["elbo"] for k in range(len(g.loaded))],
        ),
        Criterion(
            "recon",
            "held-out reconstruction error of the posterior mode per image",
            False,
            lambda g: [g.terms(k)["reconstruction_mode"] for k in range(len(g.loaded))],
        ),
        Criterion(
            "information",
            "I(x; c) of the discrete variables on held-out images, nats summed over variables",
            True,
            lambda g: [float(sum(c["information"])) for c in g.codes],
            discrete=True,
        ),
        Criterion(
            "perplexity",
            "categories in use, exp H(q_bar(c)), the mean over discrete variables",
            True,
            lambda g: [float(np.mean(c["perplexity"])) for c in g.codes],
            discrete=True,
        ),
    )
}


def check_criterion(name: str) -> Criterion:
    if name not in CRITERIA:
        raise JvaeError(f"unknown selection criterion {name!r}; choose {', '.join(CRITERIA)}")
    return CRITERIA[name]


def load_group(
    checkpoints: list[Path],
    data_path: str | None,
    device: torch.device,
    images: int = udr.IMAGES,
    seed: int = SEED,
) -> Group:
    """The checkpoints (two or more runs of one setting, trained on the same data) ready to be scored."""
    from jvae.data import open_dataset
    from jvae.modeling.checkpoint import load_checkpoint
    from jvae.studies.selection import shared_images
    from jvae.training.monitor import held_out_source

    if len(checkpoints) < 2:
        raise JvaeError("selection compares runs with each other: a group needs at least two runs")
    loaded = [load_checkpoint(path, device) for path in checkpoints]
    conditional = next((item.path for item in loaded if item.model.classes), None)
    if conditional is not None:
        raise JvaeError(
            f"{conditional}: selection compares unconditional models; this one reads class labels"
        )
    preset = loaded[0].preset
    if any(item.preset.data != preset.data for item in loaded[1:]):
        raise JvaeError("selection compares runs on the same images; these runs trained on different data")
    source = held_out_source(preset, data_path) or open_dataset(preset.data, data_path)
    return Group(loaded, source, shared_images(preset.data, data_path, images, seed), device, seed)


def score(group: Group, names: list[str] | None = None) -> dict[str, list[float]]:
    """Each criterion's figure for every run of the group (the discrete ones only where the runs have
    discrete variables)."""
    has_discrete = bool(group.loaded[0].model.discrete)
    chosen = [CRITERIA[n] for n in names] if names is not None else list(CRITERIA.values())
    return {c.name: c.score(group) for c in chosen if has_discrete or not c.discrete}
