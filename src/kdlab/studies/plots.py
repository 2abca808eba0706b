"""The figures of the fidelity study (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdlab.reporting.plotting import pyplot, save_png
from kdlab.studies.runner import Stat, stat


def ensemble(path: Path, sizes: Sequence[int], runs: Sequence[list[dict[str, Any]]]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for split, who, label, style in (
        ("agreement", "student", "test agreement", "o-"),
        ("accuracy", "student", "student accuracy", "s-"),
        ("accuracy", "teacher", "teacher accuracy", "^--"),
    ):
        stats = [stat(r, "test", split, who) for r in runs]
        ax.errorbar(
            list(sizes), [100 * s.mean for s in stats], [100 * s.std for s in stats], fmt=style, label=label, capsize=3
        )
    ax.set_xlabel("ensemble size m")
    ax.set_ylabel("%")
    ax.set_xticks(list(sizes))
    ax.legend()
    save_png(fig, path)


def bars(
    path: Path, labels: Sequence[str], runs: Sequence[list[dict[str, Any]]], ylabel: str, split: str = "test"
) -> None:
    plt = pyplot()
    stats = [stat(r, split, "agreement") for r in runs]
    fig, ax = plt.subplots(figsize=(1.6 * len(labels) + 2, 3.6))
    ax.bar(list(labels), [100 * s.mean for s in stats], yerr=[100 * s.std for s in stats], capsize=4, color="#4c72b0")
    low = min(100 * (s.mean - s.std) for s in stats)
    ax.set_ylim(max(0.0, low - 3), 100)
    ax.set_ylabel(ylabel)
    save_png(fig, path)


def policies(path: Path, names: Sequence[str], test: Sequence[Stat], views: Sequence[Stat]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.8))
    x = range(len(names))
    ax.bar(
        [i - 0.2 for i in x],
        [100 * s.mean for s in test],
        0.4,
        yerr=[100 * s.std for s in test],
        capsize=3,
        label="test",
    )
    ax.bar(
        [i + 0.2 for i in x],
        [100 * s.mean for s in views],
        0.4,
        yerr=[100 * s.std for s in views],
        capsize=3,
        label="training views",
    )
    ax.set_xticks(list(x), list(names))
    ax.set_ylabel("agreement %")
    ax.set_ylim(max(0.0, min(100 * s.mean for s in [*test, *views]) - 5), 100)
    ax.legend()
    save_png(fig, path)


def interpolation(path: Path, lambdas: Sequence[float], runs: Sequence[list[dict[str, Any]]]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for split, label, style in (("train", "train agreement", "o-"), ("test", "test agreement", "s--")):
        stats = [stat(r, split, "agreement") for r in runs]
        ax.errorbar(
            list(lambdas),
            [100 * s.mean for s in stats],
            [100 * s.std for s in stats],
            fmt=style,
            label=label,
            capsize=3,
        )
    ax.set_xlabel("λ (share of the teacher in the initial weights)")
    ax.set_ylabel("agreement %")
    ax.legend()
    save_png(fig, path)
