"""Tables of run summaries: one row per model, mean ± std over seeds."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from kdlab.reporting.table import format_table, mean_std

# (header, section, split, metric, scale, digits)
COLUMNS = [
    ("accuracy %", "test", "accuracy", 100.0, 2),
    ("NLL", "test", "nll", 1.0, 3),
    ("ECE %", "test", "ece", 100.0, 2),
    ("agreement %", "test", "agreement", 100.0, 2),
    ("KL", "test", "kl", 1.0, 4),
    ("train agr. %", "train", "agreement", 100.0, 2),
]


def student_key(summary: dict[str, Any]) -> str:
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


def comparison_table(rows: Sequence[tuple[str, Sequence[dict[str, Any]]]], teacher: dict[str, float] | None) -> str:
    """One row for the teacher (if any) and one per labelled group of runs."""
    table = []
    if teacher is not None:
        table.append(
            [
                "teacher",
                *[
                    mean_std([teacher[m]], scale=sc, digits=d) if sp == "test" and m in teacher else None
                    for _, sp, m, sc, d in COLUMNS
                ],
            ]
        )
    for label, summaries in rows:
        table.append([label, *[mean_std(values(summaries, sp, m), scale=sc, digits=d) for _, sp, m, sc, d in COLUMNS]])
    return format_table(["model", *[c[0] for c in COLUMNS]], table)


def depth_table(rows: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> str:
    """For depth-switchable models: one row per (label, depth) — accuracy (also with the full net's BatchNorm
    statistics), agreement with the full net, parameters, multiply-adds and CPU latency. Empty without any."""
    table = []
    for label, summaries in rows:
        per_run = [s[student_key(s)].get("depths", {}) for s in summaries]
        for depth in per_run[0] if per_run else {}:
            runs = [r[depth] for r in per_run if depth in r]
            first = runs[0]

            def column(metric: str, runs: list[dict[str, Any]] = runs) -> str | None:
                return mean_std([r[metric] for r in runs if metric in r], scale=100.0) if metric in runs[0] else None

            table.append(
                [
                    label,
                    depth,
                    column("accuracy"),
                    column("accuracy_full_bn"),
                    column("full_agreement"),
                    f"{first['parameters'] / 1e3:.1f}k",
                    f"{first['macs'] / 1e6:.2f}M",
                    f"{statistics.median(r['latency_ms'] for r in runs):.2f}",
                ]
            )
    if not table:
        return ""
    headers = ["model", "depth", "accuracy %", "acc. full-net BN %", "agr. full net %", "params", "MACs", "CPU ms/img"]
    return format_table(headers, table)
