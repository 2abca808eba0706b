"""Fidelity, calibration and representation-similarity metrics."""

from kdlab.metrics.cka import as_matrix, linear_cka, rbf_cka
from kdlab.metrics.fidelity import (
    accuracy,
    agreement,
    ece,
    fidelity_metrics,
    nll,
    predictive_kl,
    read,
    total_variation,
)

__all__ = [
    "accuracy",
    "agreement",
    "as_matrix",
    "ece",
    "fidelity_metrics",
    "linear_cka",
    "nll",
    "predictive_kl",
    "rbf_cka",
    "read",
    "total_variation",
]
