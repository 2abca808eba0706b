"""How a study states its results: tables of mean ± std and verdicts that follow the numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kdlab.reporting.pages import Section
from kdlab.studies.runner import Stat, stat


@dataclass
class Outcome:
    section: Section
    numbers: dict[str, Any]


def word(held: bool, a: Stat | None = None, b: Stat | None = None) -> str:
    """'held' / 'did not hold', flagged as not conclusive when the difference of ``a`` and ``b`` is smaller
    than the larger of their seed standard deviations."""
    text = "held" if held else "did not hold"
    if a is not None and b is not None and abs(a.mean - b.mean) < max(a.std, b.std):
        text += " (not conclusive: the difference is smaller than the seed spread)"
    return text


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def table_row(label: str, runs: list[dict[str, Any]], extra: list[str] | None = None) -> list[str]:
    return [
        label,
        stat(runs, "test", "accuracy", "teacher").show(),
        stat(runs, "test", "accuracy").show(),
        stat(runs, "test", "agreement").show(),
        stat(runs, "test", "kl").show(1.0, 4),
        stat(runs, "test", "ece").show(),
        stat(runs, "train", "agreement").show(),
        *(extra or []),
    ]


HEADERS = ["condition", "teacher acc. %", "student acc. %", "test agr. %", "test KL", "ECE %", "train agr. %"]


def metric_numbers(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [("test", "accuracy"), ("test", "agreement"), ("test", "kl"), ("test", "ece"), ("train", "agreement")]
    out = {f"{split}_{m}": vars(stat(runs, split, m)) for split, m in keys}
    out["teacher_accuracy"] = vars(stat(runs, "test", "accuracy", "teacher"))
    if any("train_views" in r["student"] for r in runs):
        out["train_views_agreement"] = vars(stat(runs, "train_views", "agreement"))
    return out
