"""Model kinds, one module each, found here by name.

A kind is a loss section (its own pydantic config, with its own defaults), the loss it computes and, where it
has one, the second network it trains in alternation (its critic). Each module in this package defines
`KIND` (or `KINDS`, for a family of kinds that differ in one detail); the preset schema, the training step, the trainer and the benchmarks ask this registry and never name
a kind, so a new kind is one new module plus a preset.

Layer 2, with `jvae.modeling` and `jvae.fast`. May import: `jvae.base`, `jvae.data`, `jvae.trackers`, `jvae.modeling`, `jvae.fast`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar, Union

import torch
from pydantic import Field
from torch import Tensor

from jvae.base.sections import LossBase, ModelConfig
from jvae.modeling.losses import LossInputs, LossTerms, Reducer
from jvae.modeling.model import JointVAE, Posterior

if TYPE_CHECKING:
    from jvae.modeling.critics import Critic

DEFAULT_KIND = "jointvae"  # a loss section without `kind` is the paper's model


Section = TypeVar("Section", bound=LossBase)


@dataclass(frozen=True)
class Kind(Generic[Section]):
    """Everything jvae needs to know about one model kind. Its hooks receive its own loss section, typed,
    and the model section where they need it; never the whole preset, whose schema is built from them."""

    name: str
    config: type[Section]
    loss: Callable[[Section, LossInputs], LossTerms]  # (the kind's section, the batch) -> every term
    # (its section, the model section, the device) -> its second network
    critic: Callable[[Section, ModelConfig, torch.device | str], Critic] | None = None
    second_batch: bool = False  # the critic's step compares the batch with a second, independent one
    labelled: bool = False  # the model and loss read each image's label
    multiprocess: bool = True  # whether DistributedDataParallel can train it (a critic is not distributed)
    check: Callable[[Section, ModelConfig], None] | None = None  # rules across sections; raises ValueError


def _discover() -> dict[str, Kind[Any]]:
    found: dict[str, Kind[Any]] = {}
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        loaded = importlib.import_module(f"{__name__}.{module.name}")
        for kind in getattr(loaded, "KINDS", (getattr(loaded, "KIND", None),)):
            if isinstance(kind, Kind):
                found[kind.name] = kind
    return {name: found[name] for name in [DEFAULT_KIND, *sorted(set(found) - {DEFAULT_KIND})]}


KINDS: dict[str, Kind[Any]] = _discover()
if TYPE_CHECKING:  # a type checker sees what every kind's section has in common
    LossConfig = LossBase
else:  # pydantic sees the union of the registered kinds' sections, told apart by `kind`
    LossConfig = Annotated[Union[tuple(k.config for k in KINDS.values())], Field(discriminator="kind")]  # noqa: UP007


def kind_of(config: LossBase) -> Kind[Any]:
    return KINDS[config.kind]


def build_critic(loss: LossBase, model: ModelConfig, device: torch.device | str) -> Critic | None:
    """The second network the kind of `loss` trains alongside the VAE, or None."""
    make = kind_of(loss).critic
    return make(loss, model, device) if make is not None else None


def model_objective(
    model: JointVAE,
    target: Tensor,
    posterior: Posterior,
    latent: Tensor,
    step: int,
    config: LossBase,
    *,
    dataset_size: int | None = None,
    critic: Critic | None = None,
    labels: Tensor | None = None,
    kl_mean: Reducer | None = None,
    jittered: Posterior | None = None,
) -> LossTerms:
    """The training loss of `config`'s kind from a reparameterised `latent` at optimiser step `step` (1 for
    the first batch).

    `kl_mean`, in a distributed run, turns this process's batch-mean KLs into the global batch's (see
    `distributed.global_mean`), so capacity terms |KL - C| see the whole batch as one process would.
    `jittered` is the posterior of the jittered batch, for kinds whose section asks for one.
    """
    batch = LossInputs(
        target,
        posterior,
        latent,
        step,
        model.decode_logits,
        model.generic,
        dataset_size,
        critic,
        labels,
        kl_mean,
        jittered,
    )
    return kind_of(config).loss(config, batch)


def objective(
    recon_logits: Tensor, target: Tensor, posterior: Posterior, step: int, config: LossBase
) -> LossTerms:
    """The loss of a kind that decodes once and needs no critic, from given reconstruction logits."""
    batch = LossInputs(target, posterior, posterior.mean, step, lambda latent: recon_logits)
    return kind_of(config).loss(config, batch)
