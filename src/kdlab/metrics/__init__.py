"""Fidelity and calibration metrics."""

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
    "ece",
    "fidelity_metrics",
    "nll",
    "predictive_kl",
    "read",
    "total_variation",
]
