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


def word(held: bool, a: Stat | None = None, b: Stat | None = None, boundary: float = 0.0) -> str:
    """The verdict on a claim about ``a − b``, whose threshold is ``boundary`` (0: a beats b; −0.005: a is within
    half a point of b): ``not conclusive`` (with the numbers) when the difference lies closer to the threshold than
    the larger of the two seed standard deviations, else ``held`` or ``did not hold`` as ``held`` says — the rule
    every study report states."""
    if a is not None and b is not None:
        margin, spread = abs(a.mean - b.mean - boundary), max(a.std, b.std)
        if margin < spread:
            what = "difference" if boundary == 0 else f"difference's distance from the threshold {boundary:+.3g}"
            return f"not conclusive (the {what}, {margin:.3g}, is smaller than the seed spread, {spread:.3g})"
    return "held" if held else "did not hold"


RULE = ("a verdict is not conclusive when the difference it rests on lies closer to the claim's threshold than the "
        "larger of the two seed standard deviations; otherwise held or did not hold as the numbers say")  # fmt: skip


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
