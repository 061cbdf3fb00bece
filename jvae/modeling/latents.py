"""Latent units and what is done with them: measuring their information, ranking and traversing them.

A unit is a continuous latent (addressed `3`, shown `z3`) or a discrete variable (`d0`). Codes are the decoder's
input vectors [z (D), c_1 (K_1), ...]; traversals change one unit of a set of base codes and decode.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from jvae.base.errors import JvaeError
from jvae.base.limits import VALUE_LIMIT
from jvae.data.capabilities import labels_of
from jvae.data.sources import ImageSource
from jvae.modeling.model import JointVAE, Posterior

# The paper's traversal range: the 5% and 95% quantiles of the N(0, 1) prior.
DEFAULT_RANGE = (NormalDist().inv_cdf(0.05), NormalDist().inv_cdf(0.95))


@dataclass(frozen=True)
class Unit:
    kind: Literal["continuous", "discrete"]
    index: int

    @property
    def label(self) -> str:
        return f"z{self.index}" if self.kind == "continuous" else f"d{self.index}"


@dataclass
class UnitKL:
    """Mean KL from the prior of each unit, in nats, over a sample of the data."""

    continuous: list[float]
    discrete: list[float]

    def of(self, unit: Unit) -> float:
        return (self.continuous if unit.kind == "continuous" else self.discrete)[unit.index]

    def as_dict(self) -> dict[str, list[float]]:
        return {"continuous": self.continuous, "discrete": self.discrete}


def all_units(model: JointVAE) -> list[Unit]:
    return [Unit("continuous", i) for i in range(model.continuous)] + [
        Unit("discrete", i) for i in range(len(model.discrete))
    ]


def ranked_units(model: JointVAE, kl: UnitKL) -> list[Unit]:
    """Continuous units by decreasing KL (the paper's figure 7 order), then discrete variables in order."""
    continuous = sorted(range(model.continuous), key=lambda i: -kl.continuous[i])
    return [Unit("continuous", i) for i in continuous] + [
        Unit("discrete", i) for i in range(len(model.discrete))
    ]


def kl_sums(posterior: Posterior) -> tuple[Tensor, Tensor]:
    """Per-unit KL summed over the batch, in float64 on the CPU, for averaging over many batches."""
    cont = posterior.kl_continuous().sum(dim=0).double().cpu()  # (D,)
    disc = torch.tensor([kl.sum().item() for kl in posterior.kl_discrete()], dtype=torch.float64)
    return cont, disc


def labels_for(model: JointVAE, source: ImageSource, indices: Tensor) -> Tensor | None:
    """The labels a class-conditional model reads with these dataset images; None for other models."""
    labels = labels_of(source) if model.classes else None
    return None if labels is None else labels[indices.cpu()]


def encode_from(model: JointVAE, source: ImageSource, indices: Tensor, device: torch.device) -> Posterior:
    """Encode dataset images; a class-conditional model reads each image's own label."""
    return model.encode(source.images(indices, device), labels_for(model, source, indices))


@torch.no_grad()
def measure_unit_kl(
    model: JointVAE, source: ImageSource, device: torch.device, n: int = 1024, seed: int = 0, batch: int = 256
) -> UnitKL:
    """Mean per-unit KL on `n` images drawn with a fixed seed, so reruns rank units the same way."""
    was_training = model.training
    model.eval()
    indices = torch.from_numpy(
        np.random.default_rng(seed).choice(len(source), size=min(n, len(source)), replace=False)
    )
    cont = torch.zeros(model.continuous, dtype=torch.float64)
    disc = torch.zeros(len(model.discrete), dtype=torch.float64)
    for start in range(0, len(indices), batch):
        batch_cont, batch_disc = kl_sums(encode_from(model, source, indices[start : start + batch], device))
        cont += batch_cont
        disc += batch_disc
    model.train(was_training)
    count = len(indices)
    return UnitKL((cont / count).tolist(), (disc / count).tolist())


@torch.no_grad()
def measure_unit_kl_on_samples(
    model: JointVAE, device: torch.device | str = "cpu", n: int = 1024, seed: int = 0, batch: int = 256
) -> UnitKL:
    """Mean per-unit KL over images the model draws itself (prior codes decoded, then encoded again).

    For a model whose training data is not at hand (a downloaded one): a unit the decoder ignores comes back
    as the prior and scores about 0, a unit it uses comes back sharp, so the ranking follows the data's.
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    cont = torch.zeros(model.continuous, dtype=torch.float64)
    disc = torch.zeros(len(model.discrete), dtype=torch.float64)
    for start in range(0, n, batch):
        codes = prior_sample(model, min(batch, n - start), generator, device)
        batch_cont, batch_disc = kl_sums(model.encode(model.decode(codes)))
        cont += batch_cont
        disc += batch_disc
    model.train(was_training)
    return UnitKL((cont / n).tolist(), (disc / n).tolist())


# ----------------------------------------------------------------------------------------------- codes


def prior_mode(model: JointVAE, n: int = 1, device: torch.device | str = "cpu") -> Tensor:
    """Codes (n, latent_dim) with every continuous unit at 0 and every discrete variable at category 0."""
    codes = torch.zeros(n, model.latent_dim, device=device)
    offset = model.continuous
    for k in model.discrete:
        codes[:, offset] = 1.0
        offset += k
    condition = model.class_code(n, device)
    if condition is not None:
        codes[:, offset:] = condition
    return codes


def set_unit(codes: Tensor, model: JointVAE, unit: Unit, value: float) -> Tensor:
    """A copy of `codes` with one unit set: a continuous value, or a discrete category as a one-hot block."""
    out = codes.clone()
    if unit.kind == "continuous":
        out[:, unit.index] = value
        return out
    offset = model.continuous + sum(model.discrete[: unit.index])
    size = model.discrete[unit.index]
    out[:, offset : offset + size] = 0.0
    out[:, offset + int(value)] = 1.0
    return out


def traversal_values(
    model: JointVAE, unit: Unit, frames: int, value_range: tuple[float, float] = DEFAULT_RANGE
) -> list[float]:
    """Values visited by a traversal: evenly spaced over the range, or each category for a discrete variable."""
    if unit.kind == "discrete":
        categories = model.discrete[unit.index]
        return [float(min(f * categories // frames, categories - 1)) for f in range(frames)]
    low, high = value_range
    return np.linspace(low, high, frames).tolist()


@torch.no_grad()
def traversal_images(
    model: JointVAE,
    bases: Tensor,
    units: list[Unit],
    frames: int,
    value_range: tuple[float, float] = DEFAULT_RANGE,
) -> Tensor:
    """Decoded traversals (frames, units, bases, C, H, W): frame f sets each row's unit to its f-th value."""
    low, high = value_range
    if not (math.isfinite(low) and math.isfinite(high) and -VALUE_LIMIT <= low < high <= VALUE_LIMIT):
        raise UnitError(
            f"traversal range {low} {high}: give LO < HI, both between -{VALUE_LIMIT} and {VALUE_LIMIT}"
        )
    rows = []
    for unit in units:
        values = traversal_values(model, unit, frames, value_range)
        codes = torch.cat([set_unit(bases, model, unit, v) for v in values])  # (frames * bases, latent)
        images = model.decode(codes)  # (frames * bases, C, H, W)
        rows.append(images.view(frames, bases.shape[0], *images.shape[1:]))
    return torch.stack(rows, dim=1).cpu()


# ----------------------------------------------------------------------------------------------- addressing


class UnitError(JvaeError):
    """A unit address, name or value that does not fit the model."""

    exit_code = 2


def unit_address(unit: Unit) -> str:
    """How users type a unit: `3` for a continuous unit, `d0` for a discrete variable."""
    return str(unit.index) if unit.kind == "continuous" else f"d{unit.index}"


def describe_units(model: JointVAE, names: dict[str, str]) -> str:
    known = ", ".join(f"{name} ({address})" for address, name in sorted(names.items())) or "none yet"
    return (
        (f"continuous units 0..{model.continuous - 1}" if model.continuous else "no continuous units")
        + (f", discrete d0..d{len(model.discrete) - 1}" if model.discrete else "")
        + f"; names: {known}"
    )


def parse_unit(text: str, model: JointVAE, names: dict[str, str] | None = None) -> Unit:
    """A unit from `3`, `z3`, `d0` or a name stored in the checkpoint."""
    names = names or {}
    key = text.strip()
    by_name = {name: address for address, name in names.items()}
    if key in by_name:
        key = by_name[key]
    match = re.fullmatch(r"z?(\d+)", key)
    if match and int(match.group(1)) < model.continuous:
        return Unit("continuous", int(match.group(1)))
    match = re.fullmatch(r"d(\d+)", key)
    if match and int(match.group(1)) < len(model.discrete):
        return Unit("discrete", int(match.group(1)))
    raise UnitError(f"unknown unit {text!r}; this model has {describe_units(model, names)}")


@dataclass(frozen=True)
class Change:
    """One edit of one unit: add `value` to it, or set it to `value`."""

    unit: Unit
    op: Literal["add", "set"]
    value: float


def parse_change(unit: Unit, text: str, model: JointVAE) -> Change:
    """`+d` adds, `-d` subtracts, `=v` or `v` sets; discrete variables take a category index."""
    raw = text.strip()
    op: Literal["add", "set"] = "set"
    if raw.startswith(("+", "-")):
        op = "add"
    body = raw[1:] if raw.startswith(("=", "+")) else raw
    try:
        value = float(body)
    except ValueError:
        raise UnitError(f"{unit_address(unit)}: {text!r} is not +d, -d, =v or a number") from None
    if not math.isfinite(value) or abs(value) > VALUE_LIMIT:
        raise UnitError(
            f"{unit_address(unit)}: {text!r} is not a number between -{VALUE_LIMIT} and {VALUE_LIMIT}"
        )
    if unit.kind == "discrete":
        categories = model.discrete[unit.index]
        if op == "add" or value != int(value) or not 0 <= value < categories:
            raise UnitError(f"d{unit.index} takes a category: d{unit.index}=K with K in 0..{categories - 1}")
    return Change(unit, op, value)


def apply_changes(codes: Tensor, model: JointVAE, changes: list[Change], fraction: float = 1.0) -> Tensor:
    """Codes with every change applied; `fraction` < 1 moves continuous units part of the way (sweeps)."""
    out = codes.clone()
    for change in changes:
        if change.unit.kind == "discrete":
            out = set_unit(out, model, change.unit, change.value) if fraction >= 0.5 else out
            continue
        current = out[:, change.unit.index]
        target = current + change.value if change.op == "add" else torch.full_like(current, change.value)
        out[:, change.unit.index] = current + fraction * (target - current)
    return out


# ----------------------------------------------------------------------------------------------- prior


def prior_sample(
    model: JointVAE, n: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> Tensor:
    """Codes drawn from the prior: z ~ N(0, I) and each c_i a uniformly drawn one-hot category."""
    parts = [torch.randn(n, model.continuous, generator=generator).to(device)]
    for k in model.discrete:
        categories = torch.randint(k, (n,), generator=generator)
        parts.append(torch.nn.functional.one_hot(categories, k).float().to(device))
    condition = model.class_code(n, device)
    return torch.cat(parts if condition is None else [*parts, condition], dim=1)
