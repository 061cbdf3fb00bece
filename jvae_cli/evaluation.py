"""Scoring a checkpoint: every metric its dataset supports, gathered into one report with its settings.

The representation scored is the continuous means followed by each discrete
variable's argmax category. Everything random is drawn from `seed`, so a report is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch

from jvae_cli import __version__
from jvae_cli import metrics as m
from jvae_cli.checkpoint import LoadedCheckpoint, file_sha256
from jvae_cli.data.capabilities import ground_truth, labels_of
from jvae_cli.data.sources import ImageSource
from jvae_cli.latents import Unit, all_units, encode_from, kl_sums, labels_for, unit_address
from jvae_cli.losses import reconstruction
from jvae_cli.model import JointVAE, Posterior
from jvae_cli.presets import Preset

GROUND_TRUTH_METRICS = ("factorvae", "betavae", "mig", "dci", "sap", "mic")
LABEL_METRICS = ("cluster_accuracy", "linear_probe", "class_split")
ALWAYS = ("elbo", "unsupervised")
ALL_METRICS = GROUND_TRUTH_METRICS + LABEL_METRICS + ALWAYS

Status = Callable[[str], None]


def representation(model: JointVAE) -> m.EncodeFn:
    """images -> [means, argmax of each discrete variable] as a numpy array, batch by batch."""
    device = next(model.parameters()).device

    @torch.no_grad()
    def encode(images: torch.Tensor) -> np.ndarray:
        return _code(model.encode(images.to(device)))

    return encode


def _code(posterior: Posterior) -> np.ndarray:
    """The representation's row of each image: continuous means, then each discrete variable's argmax."""
    parts = [posterior.mean.float()] + [c.float().unsqueeze(1) for c in posterior.categories]
    return torch.cat(parts, dim=1).cpu().numpy()


class _VoteSettings(TypedDict):
    """What the FactorVAE and beta-VAE scores share, typed so it can be passed as **."""

    seed: int
    num_train: int
    num_eval: int
    device: torch.device


class _SplitSettings(TypedDict):
    """What DCI and SAP share (they name their held-out count num_test), typed so it can be passed as **."""

    seed: int
    num_train: int
    num_test: int
    device: torch.device


@dataclass
class Report:
    metrics: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    factor_units: list[dict[str, Any]] = field(default_factory=list)
    mi_matrix: list[list[float]] | None = None  # (K, D) normalised MI, factors x code columns
    unit_kl: dict[str, float] = field(default_factory=dict)


def supported(source: ImageSource, model: JointVAE | None = None) -> list[str]:
    """The metrics this dataset (and model) can report: ground-truth ones need factors, label ones labels,
    and class_split (the class-conditional paper's table 1) a class-conditional model."""
    names = list(ALWAYS)
    if ground_truth(source) is not None:
        names = list(GROUND_TRUTH_METRICS) + names
    if labels_of(source) is not None:
        conditional = model is not None and model.classes
        names = [n for n in LABEL_METRICS if conditional or n != "class_split"] + names
    return names


def default_settings(fast: bool) -> dict[str, int]:
    """disentanglement_lib's sample counts, or a tenth of them with `fast`."""
    scale = 10 if fast else 1
    return {
        "num_train": 10000 // scale,
        "num_eval": 5000 // scale,
        "num_variance_estimate": 10000 // scale,
        "mig_points": 10000 // scale,
        "heldout_points": 2048 // (2 if fast else 1),
    }


def elbo_terms(
    loaded: LoadedCheckpoint, source: ImageSource, device: torch.device, n: int, seed: int
) -> tuple[dict, dict]:
    """Reconstruction error of the mode, sampled ELBO terms and per-unit KL on held-out images: a fixed,
    seeded draw, so that reports of different checkpoints compare the same images."""
    return elbo_on(loaded.model, loaded.preset, source, device, n, seed)


@torch.no_grad()
def elbo_on(
    model: JointVAE, preset: Preset, source: ImageSource, device: torch.device, n: int, seed: int
) -> tuple[dict, dict]:
    """`elbo_terms` of a live model (training evaluates with it while it trains)."""
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


def evaluate(
    loaded: LoadedCheckpoint,
    checkpoint_path: Path,
    source: ImageSource,
    device: torch.device,
    chosen: list[str] | None = None,
    seed: int = 0,
    fast: bool = False,
    status: Status | None = None,
) -> Report:
    """Every metric in `chosen` (default: all the dataset supports)."""
    import sklearn

    say = status or (lambda text: None)
    available = supported(source, loaded.model)
    names = [n for n in (chosen or available) if n in available]
    counts = default_settings(fast)
    model = loaded.model.to(device).eval()
    encode = representation(model)
    report = Report()
    report.settings = {
        "seed": seed,
        "fast": fast,
        "metrics": names,
        "counts": counts,
        "dataset": source.description,
        "representation": "continuous means, then each discrete variable's argmax",
        "checkpoint": str(checkpoint_path),
        "checkpoint_sha256": file_sha256(checkpoint_path),
        "versions": {
            "jvae": __version__,
            "torch": str(torch.__version__),
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
        },
    }
    units = all_units(model)  # the unit behind each column of the codes
    unit_labels = [unit.label for unit in units]

    if "elbo" in names:
        say("ELBO terms and per-unit KL on held-out images")
        report.metrics["elbo"], report.unit_kl = elbo_terms(
            loaded, source, device, counts["heldout_points"], seed
        )

    if "unsupervised" in names and model.continuous:
        say("unsupervised scores of the encoder means")
        rng = np.random.RandomState(seed + 2)
        picks = rng.choice(len(source), size=min(len(source), counts["num_train"]), replace=False)
        batches = [torch.from_numpy(picks[i : i + 256]) for i in range(0, len(picks), 256)]
        with torch.no_grad():
            means = np.concatenate(
                [encode_from(model, source, batch, device).mean.float().cpu().numpy() for batch in batches]
            )
        report.metrics["unsupervised"] = m.unsupervised_scores(means)

    factors_source = ground_truth(source)
    if factors_source is not None:
        votes: _VoteSettings = {
            "seed": seed,
            "num_train": counts["num_train"],
            "num_eval": counts["num_eval"],
            "device": device,
        }
        if "factorvae" in names:
            say("FactorVAE score")
            report.metrics["factorvae"] = m.factorvae_score(
                encode, factors_source, num_variance_estimate=counts["num_variance_estimate"], **votes
            )
        if "betavae" in names:
            say("beta-VAE score")
            report.metrics["betavae"] = m.betavae_score(encode, factors_source, **votes)
        if {"mig", "mic"} & set(names):
            say("mutual information (MIG, MIC)")
            codes, factors = m.factor_codes(
                encode, factors_source, counts["mig_points"], np.random.RandomState(seed), device=device
            )
            informative = [j for j in range(factors.shape[1]) if len(np.unique(factors[:, j])) > 1]
            mi = m.mutual_information_matrix(codes, factors)  # (D, K)
            entropy = np.array([m.factor_entropy(factors[:, j]) for j in range(factors.shape[1])])
            normalised = mi / np.where(entropy > 0, entropy, np.nan)  # (D, K)
            report.mi_matrix = [[float(v) for v in normalised[:, j]] for j in range(factors.shape[1])]
            if "mig" in names:
                report.metrics["mig"] = m.mig(codes, factors)
            for j in informative:
                column = normalised[:, j]
                order = np.argsort(column)[::-1]
                top, second = float(column[order[0]]), float(column[order[1]]) if len(order) > 1 else 0.0
                entry = {
                    "factor": factors_source.factor_names[j],
                    "unit": unit_address(units[order[0]]),
                    "label": unit_labels[order[0]],
                    "normalised_mi": top,
                    "runner_up_mi": second,
                    "clear": bool(top >= 0.1 and top >= 2 * second),
                }
                if "mic" in names:
                    entry["mic"] = m.mic(codes, factors[:, j], [int(order[0])])
                report.factor_units.append(entry)
            if "mic" in names:
                report.metrics["mic"] = {e["factor"]: e["mic"] for e in report.factor_units}
        shared: _SplitSettings = {
            "seed": seed,
            "num_train": counts["num_train"],
            "num_test": counts["num_eval"],
            "device": device,
        }
        if "dci" in names:
            say("DCI")
            report.metrics["dci"] = m.dci(encode, factors_source, **shared)
        if "sap" in names:
            say("SAP")
            report.metrics["sap"] = m.sap(encode, factors_source, **shared)

    labels = labels_of(source)
    if labels is not None and {"cluster_accuracy", "linear_probe", "class_split"} & set(names):
        say("label metrics")
        rng = np.random.RandomState(seed)
        count = min(len(source), counts["num_train"] + counts["num_eval"])
        picks = rng.choice(len(source), size=count, replace=False)
        batches = [torch.from_numpy(picks[i : i + 256]) for i in range(0, count, 256)]
        codes, samples = labelled_codes(model, source, batches, device, seed)
        truth = np.asarray(labels)[picks]
        split = int(count * 2 / 3)
        if "cluster_accuracy" in names and model.discrete:
            report.metrics["cluster_accuracy"] = {
                f"d{i}": m.cluster_accuracy(codes[:, model.continuous + i], truth)
                for i in range(len(model.discrete))
            }
        if "linear_probe" in names:
            report.metrics["linear_probe"] = m.linear_probe(
                codes[:split], truth[:split], codes[split:], truth[split:], seed
            )
        if "class_split" in names and model.classes:
            report.metrics["class_split"] = {
                part: m.linear_probe(
                    samples[:split, cols], truth[:split], samples[split:, cols], truth[split:], seed
                )
                for part, cols in (
                    ("z", slice(0, model.generic)),
                    ("w", slice(model.generic, model.continuous)),
                )
            }
    return report


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
        codes.append(_code(posterior))
        eps = torch.randn(posterior.mean.shape, generator=generator, device=device)
        draws.append((posterior.mean + torch.exp(0.5 * posterior.logvar) * eps).cpu().numpy())
    return np.concatenate(codes), np.concatenate(draws)


def names_to_store(report: Report) -> dict[str, str]:
    """Unit address -> factor name, for factors a unit clearly carries (a unit carrying two keeps the stronger)."""
    chosen: dict[str, tuple[str, float]] = {}
    for entry in report.factor_units:
        if entry["clear"] and (
            entry["unit"] not in chosen or chosen[entry["unit"]][1] < entry["normalised_mi"]
        ):
            chosen[entry["unit"]] = (entry["factor"], entry["normalised_mi"])
    return {unit: factor for unit, (factor, _) in chosen.items()}
