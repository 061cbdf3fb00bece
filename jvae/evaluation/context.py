"""One evaluation as the metrics see it: the model, the data, the seed and sample counts, and the intermediate
results several metrics read (the codes of drawn factors, the mutual-information matrix, the labelled sample),
each computed the first time a metric asks for it and kept for the others.

The representation scored is the continuous means followed by each discrete variable's argmax category.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar, cast

import numpy as np
import torch

from jvae.data.capabilities import GroundTruth, ground_truth, labels_of
from jvae.data.sources import ImageSource
from jvae.evaluation.sampling import EncodeFn, train_test_codes
from jvae.modeling.latents import Unit, all_units, labels_for
from jvae.modeling.model import JointVAE, Posterior
from jvae.modeling.presets import Preset

Kept = TypeVar("Kept")


def representation(model: JointVAE) -> EncodeFn:
    """images -> [means, argmax of each discrete variable] as a numpy array, batch by batch."""
    device = next(model.parameters()).device

    @torch.no_grad()
    def encode(images: torch.Tensor) -> np.ndarray:
        return code_rows(model.encode(images.to(device)))

    return encode


def code_rows(posterior: Posterior) -> np.ndarray:
    """The representation's row of each image: continuous means, then each discrete variable's argmax."""
    parts = [posterior.mean.float()] + [c.float().unsqueeze(1) for c in posterior.categories]
    return torch.cat(parts, dim=1).cpu().numpy()


@torch.no_grad()
def labelled_codes(
    model: JointVAE, source: ImageSource, batches: list[torch.Tensor], device: torch.device, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each image encoded once (with its label, for a class-conditional model): its representation row, and
    one draw of its continuous units from q with a seeded generator, which the class-conditional paper's
    table 1 classifies ("samples from z and w|y", not posterior means)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    codes, draws = [], []
    for batch in batches:
        posterior = model.encode(source.images(batch, device), labels_for(model, source, batch))
        codes.append(code_rows(posterior))
        eps = torch.randn(posterior.mean.shape, generator=generator, device=device)
        draws.append((posterior.mean + torch.exp(0.5 * posterior.logvar) * eps).cpu().numpy())
    return np.concatenate(codes), np.concatenate(draws)


@dataclass
class Evaluation:
    """What every metric of one `jvae evaluate` reads. `shared(make)` is how metrics share work: the first
    call computes `make(self)`, later calls (from any metric) get the same result."""

    model: JointVAE
    preset: Preset
    source: ImageSource
    device: torch.device
    seed: int
    counts: dict[str, int]  # the sample counts, `default_settings(fast)`
    say: Callable[[str], None] = lambda text: None  # a progress line for the person waiting
    _kept: dict[Callable[..., Any], Any] = field(default_factory=dict, repr=False)

    def shared(self, make: Callable[[Evaluation], Kept]) -> Kept:
        if make not in self._kept:
            self._kept[make] = make(self)
        return cast("Kept", self._kept[make])

    def has(self, make: Callable[[Evaluation], Any]) -> bool:
        """Whether some metric asked for `make`'s result (the report then shows what it holds)."""
        return make in self._kept

    @cached_property
    def encode(self) -> EncodeFn:
        return representation(self.model)

    @cached_property
    def units(self) -> list[Unit]:
        """The unit behind each column of the codes."""
        return all_units(self.model)

    @property
    def factors(self) -> GroundTruth:
        found = ground_truth(self.source)
        if found is None:
            raise ValueError(f"{self.source.description} has no ground-truth factors")
        return found

    @property
    def labels(self) -> np.ndarray:
        found = labels_of(self.source)
        if found is None:
            raise ValueError(f"{self.source.description} has no labels")
        return np.asarray(found)


@dataclass
class LabelledSample:
    """A seeded sample of labelled images, encoded once: what every label metric reads."""

    codes: np.ndarray  # (N, D) representation rows
    samples: np.ndarray  # (N, continuous) one posterior draw of the continuous units
    truth: np.ndarray  # (N,) labels
    split: int  # rows before it train a classifier, rows after it test it


def labelled_sample(evaluation: Evaluation) -> LabelledSample:
    """num_train + num_eval images drawn with RandomState(seed), two thirds to train, one third to test:
    `evaluation.shared(labelled_sample)`."""
    evaluation.say("label metrics")
    source, counts = evaluation.source, evaluation.counts
    rng = np.random.RandomState(evaluation.seed)
    count = min(len(source), counts["num_train"] + counts["num_eval"])
    picks = rng.choice(len(source), size=count, replace=False)
    batches = [torch.from_numpy(picks[i : i + 256]) for i in range(0, count, 256)]
    codes, samples = labelled_codes(evaluation.model, source, batches, evaluation.device, evaluation.seed)
    return LabelledSample(codes, samples, evaluation.labels[picks], int(count * 2 / 3))


def split_codes(evaluation: Evaluation) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The training and test codes DCI and SAP both score (disentanglement_lib draws the same ones for
    each from the same seed, so one draw serves both): `evaluation.shared(split_codes)`."""
    return train_test_codes(
        evaluation.encode,
        evaluation.factors,
        evaluation.seed,
        evaluation.counts["num_train"],
        evaluation.counts["num_eval"],
        16,
        evaluation.device,
    )
