"""Cross-check of jvae's UDR against disentanglement_lib's own code on the same representations.

disentanglement_lib (github.com/google-research/disentanglement_lib) computes UDR in
`evaluation/udr/metrics/udr.py`. This script loads that file from a clone you give it (its gin and absl
imports are stood in for: they only register configuration and log), feeds `compute_udr_sklearn` and
jvae's `udr` module the same continuous representations of several synthetic runs (some units permuted,
sign-flipped, mixed, noisy or switched off), and prints the largest difference of the pairwise and per-run
scores for the Lasso and Spearman variants. jvae matches when every difference is below 1e-6.

    git clone https://github.com/google-research/disentanglement_lib
    python benchmarks/udr_crosscheck.py --disentanglement-lib disentanglement_lib
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np

from jvae.studies import udr

TOLERANCE = 1e-6


def _stand_ins() -> None:
    """Minimal gin.tf and absl.logging, where they are not installed: the UDR module only decorates and logs
    with them."""
    if importlib.util.find_spec("gin") is None:
        gin = types.ModuleType("gin")
        gin_tf = types.ModuleType("gin.tf")

        def configurable(*_args: object, **_kwargs: object):  # noqa: ANN202 - a decorator factory
            return lambda function: function

        gin.configurable = configurable  # type: ignore[attr-defined]
        gin.tf = gin_tf  # type: ignore[attr-defined]
        sys.modules["gin"], sys.modules["gin.tf"] = gin, gin_tf
    if importlib.util.find_spec("absl") is None:
        absl = types.ModuleType("absl")
        logging = types.ModuleType("absl.logging")
        logging.info = lambda *args, **kwargs: None  # type: ignore[attr-defined]
        absl.logging = logging  # type: ignore[attr-defined]
        sys.modules["absl"], sys.modules["absl.logging"] = absl, logging


def _library_udr(root: Path) -> types.ModuleType:
    _stand_ins()
    path = root / "disentanglement_lib" / "evaluation" / "udr" / "metrics" / "udr.py"
    spec = importlib.util.spec_from_file_location("dlib_udr", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"not found: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic_runs(count: int, points: int, units: int, seed: int) -> list[udr.Representation]:
    """Runs over shared factors: a permuted, sign-flipped copy with noise, mixed for some runs, and a few
    units switched off (KL near zero) per run."""
    rng = np.random.RandomState(seed)
    factors = rng.randn(points, units)
    runs = []
    for k in range(count):
        mixing = np.eye(units)[rng.permutation(units)] * rng.choice([-1.0, 1.0], size=units)
        if k % 2:
            mixing = mixing + rng.randn(units, units) * 0.5 * (k / count)
        means = factors @ mixing + rng.randn(points, units) * 0.1 * (k + 1)
        kl = rng.uniform(0.5, 3.0, size=units)
        off = rng.choice(units, size=k % 3, replace=False)
        kl[off] = rng.uniform(0.0, 0.009, size=len(off))
        runs.append(udr.Representation(means, kl, [], np.zeros(0)))
    return runs


class _Indices:
    """A stand-in ground-truth dataset whose observations are row numbers of the shared representations."""

    def __init__(self) -> None:
        self.next = 0

    def sample_observations(self, count: int, random_state: np.random.RandomState) -> np.ndarray:
        rows = np.arange(self.next, self.next + count)
        self.next += count
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--disentanglement-lib", type=Path, required=True, help="a clone of the library")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--units", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    library = _library_udr(args.disentanglement_lib)
    runs = synthetic_runs(args.runs, udr.IMAGES, args.units, args.seed)
    worst = 0.0
    for method in ("lasso", "spearman"):
        functions = [(lambda rows, run=run: (run.means[rows], run.kl_continuous)) for run in runs]
        theirs = library.compute_udr_sklearn(
            _Indices(), functions, np.random.RandomState(0), 10, udr.IMAGES, correlation_matrix=method
        )
        pairwise = udr.pairwise_scores(runs, method)
        ours = udr.run_scores(pairwise)
        their_pairs = np.asarray(theirs["pairwise_disentanglement_scores"])[..., 0]
        off_diagonal = ~np.eye(len(runs), dtype=bool)
        pair_gap = float(np.max(np.abs(pairwise[off_diagonal] - their_pairs[off_diagonal])))
        run_gap = float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs["model_scores"]))))
        worst = max(worst, pair_gap, run_gap)
        print(f"{method:8s} per-run jvae   {np.round(ours, 6).tolist()}")
        print(f"{method:8s} per-run dlib   {np.round(theirs['model_scores'], 6).tolist()}")
        print(f"{method:8s} largest difference: pairs {pair_gap:.2e}, runs {run_gap:.2e}")
    print(
        f"{'match' if worst < TOLERANCE else 'MISMATCH'}: largest difference {worst:.2e} (tolerance {TOLERANCE})"
    )
    sys.exit(0 if worst < TOLERANCE else 1)


if __name__ == "__main__":
    main()
