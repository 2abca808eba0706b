"""The columns of an image job's table and of ``kdlab compare``, and the per-depth table of depth-switchable
students."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from kdlab.reporting.table import format_table, mean_std
from kdlab.reporting.tables import Column
from kdlab.runs.summaries import student_key

COLUMNS = (
    Column("accuracy %", "test", "accuracy"),
    Column("NLL", "test", "nll", 1.0, 3),
    Column("ECE %", "test", "ece"),
    Column("agreement %", "test", "agreement"),
    Column("KL", "test", "kl", 1.0, 4),
    Column("train agr. %", "train", "agreement"),
)
COMPARE_COLUMNS = (
    Column("accuracy %", "test", "accuracy"),
    Column("agreement %", "test", "agreement"),
    Column("KL", "test", "kl", 1.0, 4),
    Column("ECE %", "test", "ece"),
    Column("train agr. %", "train", "agreement"),
)


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
