"""One optimisation step of the VAE, and one of its critic, as the trainer runs them (and tests check them)."""

from __future__ import annotations

import torch
from torch import Tensor

from jvae_cli.critics import Critic, LabelClassifier, TCDiscriminator
from jvae_cli.losses import LossTerms, model_objective
from jvae_cli.model import JointVAE
from jvae_cli.presets import Preset


def vae_step(
    model: JointVAE,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    labels: Tensor | None,
    step: int,
    preset: Preset,
    noise: torch.Generator,
    dataset_size: int,
    critic: Critic | None = None,
) -> tuple[LossTerms, Tensor]:
    """Update the encoder and decoder on batch `x`; returns the loss terms and the (detached) sampled codes."""
    posterior = model.encode(x, labels)
    latent = posterior.sample(preset.model.temperature, noise)
    terms = model_objective(
        model,
        x,
        posterior,
        latent,
        step,
        preset.loss,
        dataset_size=dataset_size,
        critic=critic,
        labels=labels,
    )
    optimizer.zero_grad(set_to_none=True)
    terms.loss.backward()
    optimizer.step()
    return terms, latent.detach()


def critic_step(
    model: JointVAE,
    critic: Critic,
    preset: Preset,
    latent: Tensor,
    labels: Tensor | None,
    noise: torch.Generator,
    other_x: Tensor | None = None,
) -> Tensor:
    """Update the critic alone: its inputs are detached codes, so the encoder receives nothing.

    FactorVAE's discriminator compares the VAE batch's codes with the shuffled codes of a second batch
    (`other_x`, encoded without gradient); the class-conditional classifier learns the label from the units
    `loss.classifier_reads` names.
    """
    if isinstance(critic, TCDiscriminator):
        assert other_x is not None
        with torch.no_grad():
            other = model.encode(other_x).sample(preset.model.temperature, noise)
        units = model.continuous
        return critic.step(latent[:, :units], other[:, :units], noise)
    if isinstance(critic, LabelClassifier):
        assert labels is not None
        g = model.generic
        reads = preset.loss.classifier_reads or "w"
        codes = latent[:, g : 2 * g] if reads == "w" else latent[:, :g]
        return critic.step(codes, labels)
    raise TypeError(f"no critic step for {type(critic).__name__}")
