"""What every study needs: train (or reuse) its teachers, run its conditions, read their numbers back.

A study owns one folder. Teachers go to ``teachers/<name>``, each condition of each experiment to
``runs/<experiment>/<condition>``; both go through the ordinary workflow, so every run has its config,
metrics, checkpoints and index row, and running the study again skips what already finished and resumes
what was interrupted.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdlab.pipeline import dispatch
from kdlab.pipeline.config import apply_overrides, resolve
from kdlab.pipeline.execute import Outcome
from kdlab.pipeline.plan import member_name


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of two config mappings (``overrides`` wins)."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass
class Stat:
    """Mean ± sample std of one metric over seeds."""

    values: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else float("nan")

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def show(self, scale: float = 100.0, digits: int = 2) -> str:
        if not self.values:
            return "-"
        return f"{self.mean * scale:.{digits}f} ± {self.std * scale:.{digits}f}"


def stat(summaries: Sequence[dict[str, Any]], split: str, metric: str, who: str = "student") -> Stat:
    return Stat([s[who][split][metric] for s in summaries if metric in s.get(who, {}).get(split, {})])


@dataclass
class StudyContext:
    folder: Path
    base: dict[str, Any]
    progress: bool = True
    overrides: list[str] = field(default_factory=list)
    # run folder → its wall time, for every run the study used (all) and the current experiment used
    used: dict[str, float] = field(default_factory=dict)
    current: dict[str, float] = field(default_factory=dict)

    def _note(self, summaries: dict[str, list[dict[str, Any]]], folder: Path) -> None:
        grouped = len(summaries) > 1 or any(len(runs) > 1 for runs in summaries.values())
        for role, runs in summaries.items():
            for run in runs:
                run["run_folder"] = str(folder / member_name(role, run["seed"]) if grouped else folder)
                self.used[run["run_folder"]] = self.current[run["run_folder"]] = run.get("wall_time_s", 0.0)

    def _execute(self, mapping: dict[str, Any], command: str, folder: Path) -> Outcome:
        config = resolve(apply_overrides(mapping, self.overrides))
        config.runs_dir = str(self.folder)
        return dispatch.run(config, command, folder=folder, resume=folder.exists(), progress=self.progress)  # type: ignore[arg-type]

    def train(self, experiment: str, condition: str, settings: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """Run one condition trained without a teacher (``kdlab train``: ce, or ekd); summaries per role."""
        folder = self.folder / "runs" / experiment / condition
        summaries = self._execute(merge(self.base, settings), "train", folder).summaries
        self._note(summaries, folder)
        return summaries

    def teachers(self, name: str, settings: dict[str, Any], seeds: Sequence[int]) -> list[Path]:
        """Train teacher ``name`` for every seed (once); returns the model folders, one per seed."""
        folder = self.folder / "teachers" / name
        mapping = merge(self.base, {**settings, "seeds": list(seeds), "independent": False})
        mapping["method"] = {"name": "ce"}
        self._note(self._execute(mapping, "train", folder).summaries, folder)
        return [folder / f"seed{s}" for s in seeds] if len(seeds) > 1 else [folder]

    def distill(self, experiment: str, condition: str, settings: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """Run one condition (every seed, plus a control when ``settings`` names ``control_teacher``);
        returns the summaries per role."""
        folder = self.folder / "runs" / experiment / condition
        mapping = merge(self.base, settings)
        for key in ("teacher", "control_teacher"):
            if key in mapping:
                value = mapping[key]
                mapping[key] = [str(v) for v in value] if isinstance(value, list) else str(value)
        summaries = self._execute(mapping, "distill", folder).summaries
        self._note(summaries, folder)
        return summaries
