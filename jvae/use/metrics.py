"""Disentanglement metrics as a Python API, for any representation, to disentanglement_lib's definitions and
defaults.

The field's scores are known to drift between libraries, so each function follows disentanglement_lib step
for step: the same sample counts, the same estimators (20-bin histograms and sklearn's mutual_info_score for
MIG, majority vote for FactorVAE, logistic regression for beta-VAE, gradient boosted trees for DCI,
LinearSVC(C=0.01, balanced) for SAP) and a numpy RandomState seeded by `seed`, so the same seed gives the
same numbers.

Functions taking `encode` and `dataset` work on any representation: `encode` maps a float image batch
(B, C, H, W) to a codes array (B, D), and `dataset` is a ground-truth dataset (`factor_sizes`,
`sample_factors(n, rng)`, `observations(factors, device)`).

Each metric lives in its own module of `jvae.evaluation` (where `jvae evaluate` finds it); this module
gathers the functions of the metrics jvae has always offered under one name.
"""

from __future__ import annotations

from jvae.evaluation.betavae import betavae_feature, betavae_score
from jvae.evaluation.cluster_accuracy import cluster_accuracy
from jvae.evaluation.dci import dci, dci_completeness, dci_disentanglement, dci_importance
from jvae.evaluation.factorvae import factorvae_score, majority_vote_accuracy
from jvae.evaluation.information import (
    factor_entropy,
    histogram_discretize,
    mutual_information_matrix,
)
from jvae.evaluation.linear_probe import linear_probe
from jvae.evaluation.mic import mic
from jvae.evaluation.mig import mig
from jvae.evaluation.sampling import EncodeFn, factor_codes, train_test_codes
from jvae.evaluation.sap import sap, sap_from_codes, sap_from_scores
from jvae.evaluation.unsupervised import (
    active_units,
    gaussian_total_correlation,
    mutual_information_between_units,
    unsupervised_scores,
)

__all__ = [
    "EncodeFn",
    "active_units",
    "betavae_feature",
    "betavae_score",
    "cluster_accuracy",
    "dci",
    "dci_completeness",
    "dci_disentanglement",
    "dci_importance",
    "factor_codes",
    "factor_entropy",
    "factorvae_score",
    "gaussian_total_correlation",
    "histogram_discretize",
    "linear_probe",
    "majority_vote_accuracy",
    "mic",
    "mig",
    "mutual_information_between_units",
    "mutual_information_matrix",
    "sap",
    "sap_from_codes",
    "sap_from_scores",
    "train_test_codes",
    "unsupervised_scores",
]
