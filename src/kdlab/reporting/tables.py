"""The table of a job: the teacher and one row per labelled group of runs, mean ± std over seeds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kdlab.reporting.table import format_table, mean_std
from kdlab.runs.summaries import values


@dataclass(frozen=True)
class Column:
    """One column: its header, the split and metric it shows, and how (``scale`` × value, ``digits``)."""

    header: str
    split: str
    metric: str
    scale: float = 100.0
    digits: int = 2


def comparison_table(
    columns: Sequence[Column],
    rows: Sequence[tuple[str, Sequence[dict[str, Any]]]],
    teacher: dict[str, float] | None,
) -> str:
    """One row for the teacher (its test figures, if any) and one per labelled group of runs."""
    table = []
    if teacher is not None:
        cells = [
            mean_std([teacher[c.metric]], scale=c.scale, digits=c.digits)
            if c.split == "test" and c.metric in teacher
            else None
            for c in columns
        ]
        table.append(["teacher", *cells])
    for label, summaries in rows:
        cells = [mean_std(values(summaries, c.split, c.metric), scale=c.scale, digits=c.digits) for c in columns]
        table.append([label, *cells])
    return format_table(["model", *[c.header for c in columns]], table)
