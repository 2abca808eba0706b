"""Reading run summaries: the trained model's figures per split, and their mean ± std over seeds."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def student_key(summary: dict[str, Any]) -> str:
    """The section of the trained model: ``student`` (run folders written before kdlab 0.1's one pipeline called a
    model trained without a teacher ``model``)."""
    return "student" if "student" in summary else "model"


def values(summaries: Sequence[dict[str, Any]], split: str, metric: str) -> list[float]:
    out = []
    for s in summaries:
        value = s.get(student_key(s), {}).get(split, {}).get(metric)
        if value is not None:
            out.append(value)
    return out


def aggregate(summaries: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{split: {metric: {"mean", "std", "n"}}}`` over the given runs (sample std, ddof = 1)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for split in ("test", "train", "train_views"):
        metrics = {m for s in summaries for m in s.get(student_key(s), {}).get(split, {})}
        for metric in sorted(metrics):
            vals = values(summaries, split, metric)
            std = statistics.stdev(vals) if len(vals) > 1 else 0.0
            out.setdefault(split, {})[metric] = {"mean": statistics.fmean(vals), "std": std, "n": len(vals)}
    return out
