"""One comparison for every what-transferred analysis: each model's per-unit measurement (an image, a triplet, or
one number per model), every student against every independent student, and the control — the same statistic
between independent students — that a method's effect is judged against.

A comparison of a candidate with a reference scores each unit with ``score(candidate, reference)``: the win score
(1, ½ for a tie, 0; a model against itself scores 50 %) for the Grad-CAM win rate, the difference (in points; a
model against itself scores 0) for fooling, invariance, boundary, accuracy and CKA figures. Both are antisymmetric,
so the control over every ordered pair of independent students is centred (50 %, 0) by construction and its spread
is what the seeds alone do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from kdlab.analysis.stats import CONFIDENCE, RESAMPLED, ROUNDS, Estimate, estimate, paired_scores, verdict

Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def difference(candidate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``candidate − reference`` per unit (float64): a model against itself scores 0."""
    return candidate.double() - reference.double()


def _scores(score: Score, units: dict[str, torch.Tensor], pairs: list[tuple[str, str]]) -> torch.Tensor:
    return torch.stack([score(units[a], units[b]) for a, b in pairs])


def _ties(units: dict[str, torch.Tensor], pairs: list[tuple[str, str]]) -> int:
    return int(sum(int((units[a] == units[b]).sum()) for a, b in pairs))


def compare(
    units: dict[str, torch.Tensor],
    methods: dict[str, str],
    references: list[str],
    score: Score = difference,
    resampled: str = RESAMPLED,
    **options: Any,
) -> dict[str, Any]:
    """Every model of ``methods`` (label → method; the references excluded) against every reference.

    Args:
        units: label → its measurement per unit ``[N]`` (the same N units, in the same order, for every model).
        methods: label → method name, for the candidates; grouped by method in the order given.
        references: the independent students' labels (each must be in ``units``).
        score: the per-unit comparison, :func:`difference` or :func:`~kdlab.analysis.stats.paired_scores`.
        resampled: what the bootstrap draws again ("model seeds" when N = 1).
        options: ``rounds``, ``confidence``, ``seed`` of the bootstrap.

    Returns:
        ``{"units", "references", "pairs": {label: {reference: value}}, "methods": {method: Estimate dict},
        "control_pairs", "control", "bootstrap"}`` (values in % or points; no control with one reference).
    """
    grouped: dict[str, list[str]] = {}
    for label, method in methods.items():
        if label not in references:
            grouped.setdefault(method, []).append(label)
    n = len(next(iter(units.values())))
    out: dict[str, Any] = {
        "units": n, "references": list(references), "methods": {},
        "pairs": {label: {r: 100.0 * float(score(units[label], units[r]).double().mean()) for r in references}
                  for labels in grouped.values() for label in labels},
        "bootstrap": {"rounds": options.get("rounds", ROUNDS), "confidence": options.get("confidence", CONFIDENCE),
                      "resampled": resampled},
    }  # fmt: skip
    for method, labels in grouped.items():
        pairs = [(a, r) for a in labels for r in references]
        scores = _scores(score, units, pairs).view(len(labels), len(references), n)
        out["methods"][method] = estimate(scores, _ties(units, pairs), **options).as_dict()
    if len(references) > 1:
        scores, out["control_pairs"], ties = _control(units, references, score)
        out["control"] = estimate(scores, ties, **options).as_dict()
    return out


def _control(
    units: dict[str, torch.Tensor], references: list[str], score: Score
) -> tuple[torch.Tensor, dict[str, float], int]:
    ordered = [(a, b) for a in references for b in references if a != b]
    scores = _scores(score, units, ordered)
    values = (100.0 * scores.double().mean(-1)).tolist()
    return scores, {f"{a} vs {b}": v for (a, b), v in zip(ordered, values, strict=True)}, _ties(units, ordered)


def control_pairs(
    units: dict[str, torch.Tensor], references: list[str], score: Score = difference
) -> tuple[dict[str, float], int]:
    """The control's figure for every ordered pair of (at least two) ``references`` (% or points), and the ties
    among their per-unit comparisons — without the bootstrap."""
    _, values, ties = _control(units, references, score)
    return values, ties


def win_rates(units: dict[str, torch.Tensor], methods: dict[str, str], references: list[str]) -> dict[str, Any]:
    """:func:`compare` with the win score (ties counted half)."""
    return compare(units, methods, references, paired_scores)


def verdicts(block: dict[str, Any], higher: bool = True, paper: dict[str, float] | None = None) -> dict[str, str]:
    """Each method's verdict against the block's control (``"no control"`` without one); ``paper``: a method's
    effect size from the paper, where it gives one."""
    if "control" not in block:
        return {m: "no control" for m in block["methods"]}
    control = Estimate(**block["control"])
    return {m: verdict(Estimate(**e), control, higher=higher, paper=(paper or {}).get(m))
            for m, e in block["methods"].items()}  # fmt: skip
