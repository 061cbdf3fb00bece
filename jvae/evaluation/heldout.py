"""The held-out pass: reconstruction and KL terms of a fixed, seeded draw of images, which the ELBO metric, the
report's per-unit KL table and the training monitor's evaluation lines all read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from jvae.data.sources import ImageSource
from jvae.evaluation.context import Evaluation
from jvae.modeling.latents import Unit, kl_sums, labels_for, unit_address
from jvae.modeling.losses import reconstruction
from jvae.modeling.model import JointVAE
from jvae.modeling.presets import Preset


@torch.no_grad()
def elbo_on(
    model: JointVAE, preset: Preset, source: ImageSource, device: torch.device, n: int, seed: int
) -> tuple[dict, dict]:
    """Reconstruction error of the mode, sampled ELBO terms and per-unit KL on held-out images: a fixed,
    seeded draw, so that reports of different checkpoints compare the same images.

    Training evaluates a live model with it while it trains; returns (terms, KL per unit address)."""
    rng = np.random.RandomState(seed + 1)
    indices = torch.from_numpy(rng.choice(len(source), size=min(n, len(source)), replace=False))
    generator = torch.Generator(device=device).manual_seed(seed)
    sums = {"recon_mode": 0.0, "recon_sample": 0.0}
    kl_cont = torch.zeros(model.continuous, dtype=torch.float64)
    kl_disc = torch.zeros(len(model.discrete), dtype=torch.float64)
    mode, scale = preset.loss.reconstruction, preset.loss.noise_scale
    for start in range(0, len(indices), 256):
        picks = indices[start : start + 256]
        x = source.images(picks, device)
        posterior = model.encode(x, labels_for(model, source, picks))
        count = x.shape[0]
        sums["recon_mode"] += (
            reconstruction(model.decode_logits(posterior.mode()), x, mode, scale).item() * count
        )
        sampled = posterior.sample(preset.model.temperature, generator)
        sums["recon_sample"] += reconstruction(model.decode_logits(sampled), x, mode, scale).item() * count
        batch_cont, batch_disc = kl_sums(posterior)
        kl_cont += batch_cont
        kl_disc += batch_disc
    total = len(indices)
    kl_c, kl_d = (kl_cont / total).tolist(), (kl_disc / total).tolist()
    terms = {
        "images": total,
        "reconstruction_mode": sums["recon_mode"] / total,
        "reconstruction_sample": sums["recon_sample"] / total,
        "kl_continuous": sum(kl_c),
        "kl_discrete": sum(kl_d),
        "elbo": -(sums["recon_sample"] / total + sum(kl_c) + sum(kl_d)),
    }
    per_unit = {unit_address(Unit("continuous", i)): v for i, v in enumerate(kl_c)}
    per_unit.update({unit_address(Unit("discrete", i)): v for i, v in enumerate(kl_d)})
    return terms, per_unit


@dataclass
class HeldOut:
    terms: dict  # the ELBO metric's value
    per_unit: dict  # unit address -> mean KL (nats): the report's unit_kl


def heldout_pass(evaluation: Evaluation) -> HeldOut:
    """`evaluation.shared(heldout_pass)`: `elbo_on` of `heldout_points` images."""
    terms, per_unit = elbo_on(
        evaluation.model,
        evaluation.preset,
        evaluation.source,
        evaluation.device,
        evaluation.counts["heldout_points"],
        evaluation.seed,
    )
    return HeldOut(terms, per_unit)
