"""``kdlab compare``: several methods, same teacher, student, data and budget — one table and a chart."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from kdlab.core.files import write_atomic, write_json
from kdlab.pipeline.config import Config
from kdlab.reporting.plotting import pyplot, save_png
from kdlab.reporting.table import format_table, mean_std
from kdlab.runs.summaries import aggregate, values

# (header, split, metric, scale, digits)
COLUMNS = [
    ("accuracy %", "test", "accuracy", 100.0, 2),
    ("agreement %", "test", "agreement", 100.0, 2),
    ("KL", "test", "kl", 1.0, 4),
    ("ECE %", "test", "ece", 100.0, 2),
    ("train agr. %", "train", "agreement", 100.0, 2),
]


def seconds_per_epoch(summaries: list[dict[str, Any]]) -> list[float]:
    return [s["train_time_s"] / s["epochs"] for s in summaries]


def comparison(summaries: dict[str, list[dict[str, Any]]], config: Config) -> dict[str, Any]:
    """The compare.json record: per method, mean/std/n of every test and train metric and of s/epoch."""
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
    return {
        "data": config.data.name,
        "student": {"name": config.student.name, **config.student.options},
        "teacher": first.get("teacher"),
        "epochs": config.epochs,
        "seeds": config.seeds,
        "methods": methods,
    }


def rows(summaries: dict[str, list[dict[str, Any]]], teacher: dict[str, float]) -> tuple[list[str], list[list[str]]]:
    headers = ["method", *[c[0] for c in COLUMNS], "s/epoch"]
    table = [
        [
            "teacher",
            mean_std([teacher["accuracy"]], scale=100.0),
            "-",
            "-",
            mean_std([teacher["ece"]], scale=100.0),
            "-",
            "-",
        ]
    ]
    for role, runs in summaries.items():
        name = "independent (ce)" if role == "independent" else role
        cells = [
            mean_std(values(runs, split, metric), scale=scale, digits=digits)
            for _, split, metric, scale, digits in COLUMNS
        ]
        table.append([name, *cells, mean_std(seconds_per_epoch(runs), digits=2)])
    return headers, table


def markdown(headers: list[str], table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table]
    return "\n".join(lines) + "\n"


def chart(record: dict[str, Any], path: Path) -> None:
    """Bars of test accuracy, agreement and KL per method (mean ± std over seeds), teacher accuracy dashed."""
    plt = pyplot()

    names = list(record["methods"])
    fig, axes = plt.subplots(1, 3, figsize=(4 + 1.1 * len(names), 3.8), constrained_layout=True)
    for ax, (metric, title, scale) in zip(
        axes,
        [("accuracy", "test accuracy %", 100), ("agreement", "test agreement %", 100), ("kl", "test KL(t‖s)", 1)],
        strict=True,
    ):
        stats = [record["methods"][n]["test"].get(metric, {"mean": float("nan"), "std": 0.0}) for n in names]
        means = [s["mean"] * scale for s in stats]
        ax.bar(range(len(names)), means, yerr=[s["std"] * scale for s in stats], capsize=3, color="#4c72b0")
        if metric == "accuracy" and record["teacher"]:
            ax.axhline(record["teacher"]["test"]["accuracy"] * 100, ls="--", color="#c44e52", label="teacher")
            ax.legend(loc="lower right")
        spans = [(s["mean"] - s["std"]) * scale for s in stats] + [(s["mean"] + s["std"]) * scale for s in stats]
        if metric == "accuracy" and record["teacher"]:
            spans.append(record["teacher"]["test"]["accuracy"] * 100)
        spans = [v for v in spans if v == v]
        if spans and metric != "kl":  # zoom on the differences; the error bars stay in view
            low, high = min(spans), max(spans)
            pad = 0.1 * (high - low) + 0.5
            ax.set_ylim(max(0.0, low - pad), min(100.0, high + pad))
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_title(title)
    save_png(fig, path, tight=False)  # constrained layout already


def write(folder: Path, summaries: dict[str, list[dict[str, Any]]], config: Config) -> str:
    """Write compare.json, compare.md and compare.png into ``folder``; returns the terminal table."""
    record = comparison(summaries, config)
    headers, table = rows(summaries, record["teacher"]["test"])
    write_json(folder / "compare.json", record)
    setup = (
        f"{config.data.name} · teacher {', '.join(map(str, config.teacher))} · student {config.student.name} "
        f"{config.student.options or ''} · {config.epochs} epochs · seeds {', '.join(map(str, config.seeds))}"
    )
    write_atomic(
        folder / "compare.md",
        (f"# kdlab compare\n\n{setup}\n\nmean ± sample std over seeds\n\n" + markdown(headers, table)).encode(),
    )
    chart(record, folder / "compare.png")
    return format_table(headers, table)
