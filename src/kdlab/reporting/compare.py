"""``kdlab compare``'s files: several methods, same teacher, student, data and budget — ``compare.json``,
``compare.md`` and a bar chart of the task's first three columns."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdlab.core.files import write_atomic, write_json
from kdlab.reporting.plotting import pyplot, save_png
from kdlab.reporting.table import format_table, mean_std
from kdlab.reporting.tables import Column
from kdlab.runs.summaries import aggregate, values


def seconds_per_epoch(summaries: list[dict[str, Any]]) -> list[float]:
    return [s["train_time_s"] / s["epochs"] for s in summaries]


def comparison(summaries: dict[str, list[dict[str, Any]]], setup: dict[str, Any]) -> dict[str, Any]:
    """The compare.json record: the job's ``setup``, and per method mean/std/n of every test and train metric and
    of s/epoch."""
    first = next(iter(summaries.values()))[0]
    methods = {}
    for role, runs in summaries.items():
        times = seconds_per_epoch(runs)
        methods[role] = {
            "method": runs[0]["method"],
            "seeds": [r["seed"] for r in runs],
            **aggregate(runs),
            "seconds_per_epoch": {
                "mean": statistics.fmean(times),
                "std": statistics.stdev(times) if len(times) > 1 else 0.0,
            },
        }
    return {**setup, "teacher": first.get("teacher"), "methods": methods}


def rows(
    summaries: dict[str, list[dict[str, Any]]], teacher: dict[str, float], columns: Sequence[Column]
) -> tuple[list[str], list[list[str]]]:
    headers = ["method", *[c.header for c in columns], "s/epoch"]
    show = [mean_std([teacher[c.metric]], scale=c.scale, digits=c.digits) if c.split == "test" and c.metric in teacher
            else "-" for c in columns]  # fmt: skip
    table = [["teacher", *show, "-"]]
    for role, runs in summaries.items():
        name = "independent (ce)" if role == "independent" else role
        cells = [mean_std(values(runs, c.split, c.metric), scale=c.scale, digits=c.digits) for c in columns]
        table.append([name, *cells, mean_std(seconds_per_epoch(runs), digits=2)])
    return headers, table


def markdown(headers: list[str], table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table]
    return "\n".join(lines) + "\n"


def chart(record: dict[str, Any], path: Path, columns: Sequence[Column]) -> None:
    """Bars of the first three columns per method (mean ± std over seeds), the teacher's figure dashed."""
    plt = pyplot()

    names = list(record["methods"])
    shown = list(columns[:3])
    fig, axes = plt.subplots(1, len(shown), figsize=(4 + 1.1 * len(names), 3.8), constrained_layout=True, squeeze=False)
    teacher = (record["teacher"] or {}).get("test", {})
    for ax, column in zip(axes[0], shown, strict=True):
        scale, metric = column.scale, column.metric
        empty = {"mean": float("nan"), "std": 0.0}
        stats = [record["methods"][n].get(column.split, {}).get(metric, empty) for n in names]
        means = [s["mean"] * scale for s in stats]
        ax.bar(range(len(names)), means, yerr=[s["std"] * scale for s in stats], capsize=3, color="#4c72b0")
        spans = [(s["mean"] - s["std"]) * scale for s in stats] + [(s["mean"] + s["std"]) * scale for s in stats]
        if column.split == "test" and metric in teacher:
            ax.axhline(teacher[metric] * scale, ls="--", color="#c44e52", label="teacher")
            ax.legend(loc="lower right")
            spans.append(teacher[metric] * scale)
        spans = [v for v in spans if v == v]
        if spans and scale == 100.0:  # percentages: zoom on the differences; the error bars stay in view
            low, high = min(spans), max(spans)
            pad = 0.1 * (high - low) + 0.5
            ax.set_ylim(max(0.0, low - pad), min(100.0, high + pad))
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_title(f"{column.split} {column.header}")
    save_png(fig, path, tight=False)  # constrained layout already


def write(
    folder: Path,
    summaries: dict[str, list[dict[str, Any]]],
    columns: Sequence[Column],
    setup: dict[str, Any],
    line: str,
) -> str:
    """Write compare.json, compare.md and compare.png into ``folder`` (``setup``: what the job compared on, ``line``:
    it in words); returns the terminal table."""
    record = comparison(summaries, setup)
    headers, table = rows(summaries, (record["teacher"] or {}).get("test", {}), columns)
    write_json(folder / "compare.json", record)
    write_atomic(
        folder / "compare.md",
        (f"# kdlab compare\n\n{line}\n\nmean ± sample std over seeds\n\n" + markdown(headers, table)).encode(),
    )
    chart(record, folder / "compare.png", columns)
    return format_table(headers, table)
