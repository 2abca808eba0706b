"""Run the main job at one epoch and the smoke preset of every study, collect their numbers, compare with a reference.

A refactoring must not change what kdlab computes. This script runs

* ``kdlab distill epochs=1`` (the main job: Fashion-MNIST ResNet-20 teacher → cnn width 8, KD + independent student),
* ``kdlab study fidelity smoke``, ``kdlab study structural smoke``, ``kdlab study ekd smoke``,

collects every number of their ``summary.json`` and ``results.json`` files and of the per-epoch training losses in
``metrics.jsonl`` (timings left out), and writes them as one JSON file. With ``--compare REFERENCE`` it reports
every number that differs from the reference by more than ``--tolerance`` (relative) and exits 1 if any does.

    python scripts/behaviour_check.py --out /tmp/after.json --compare scripts/behaviour_reference.json

Takes about 10 minutes on 2 cores (the three smoke studies and one epoch of the main job).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

JOBS = {
    "main": ["distill", "epochs=1", "--quiet"],
    "fidelity": ["study", "fidelity", "smoke", "--quiet"],
    "structural": ["study", "structural", "smoke", "--quiet"],
    "ekd": ["study", "ekd", "smoke", "--quiet"],
}
# keys whose values are timings, sizes of this machine's files, or names that change with the folder
IGNORED = ("time", "wall", "latency", "seconds", "_s", "started", "finished", "created", "mib", "folder", "versions")
# number fields whose name changed on purpose with the one-pipeline refactoring (old name → new name, and how the
# old value reads under the new name): the label weight is ce_weight everywhere, the structured methods' λ
# (interpolation) became ce_weight = 1 − λ, their label term "labels" became "ce", a trained model is a "student"
RENAMED = {"alpha": "ce_weight", "interpolation": "ce_weight", "labels": "ce", "model": "student"}
CONVERTED = {"interpolation": lambda value: 1.0 - value}


def ignored(key: str) -> bool:
    return any(part in key.lower() for part in IGNORED)


def numbers(obj: Any, prefix: str, out: dict[str, float]) -> None:
    """Every number in ``obj`` under its path (dicts by key, lists by position)."""
    if isinstance(obj, bool) or obj is None:
        return
    if isinstance(obj, (int, float)):
        out[prefix] = float(obj)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            if ignored(str(key)):
                continue
            if str(key) in CONVERTED and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = CONVERTED[str(key)](value)
            numbers(value, f"{prefix}.{RENAMED.get(str(key), key)}", out)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            numbers(value, f"{prefix}[{i}]", out)


def collect(folder: Path, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder).parent)
        if path.name in ("summary.json", "results.json"):
            numbers(json.loads(path.read_text()), f"{name}/{relative}/{path.name}", out)
        elif path.name == "metrics.jsonl":
            history = [json.loads(line) for line in path.read_text().splitlines()]
            numbers([h.get("train", {}) for h in history], f"{name}/{relative}/train-loss", out)
    return out


def run(jobs: list[str], workdir: Path) -> dict[str, float]:
    figures: dict[str, float] = {}
    env = {**os.environ, "KDLAB_CACHE": str(workdir / "cache")}
    for name in jobs:
        folder = workdir / name
        args = [*JOBS[name], *(["--out", str(folder)] if name != "main" else [f"runs_dir={folder}", "name=main"])]
        print(f"kdlab {' '.join(args)}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "kdlab", *args], check=True, env=env, cwd=workdir)
        figures.update(collect(folder, name))
    return figures


def compare(figures: dict[str, float], reference: dict[str, float], tolerance: float) -> list[str]:
    problems = [f"missing now: {key}" for key in sorted(set(reference) - set(figures))]
    problems += [f"new now: {key} = {figures[key]}" for key in sorted(set(figures) - set(reference))]
    for key in sorted(set(figures) & set(reference)):
        a, b = figures[key], reference[key]
        same = (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tolerance * max(1.0, abs(b))
        if not same:
            problems.append(f"changed: {key}: {b!r} → {a!r}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="where to write the collected numbers (JSON)")
    parser.add_argument("--compare", default=None, help="a reference JSON written by an earlier run")
    parser.add_argument("--tolerance", type=float, default=1e-6, help="relative tolerance (default 1e-6)")
    parser.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated subset of {', '.join(JOBS)}")
    args = parser.parse_args()
    jobs = [j for j in args.jobs.split(",") if j]
    with tempfile.TemporaryDirectory(prefix="kdlab-behaviour-") as tmp:
        figures = run(jobs, Path(tmp))
    Path(args.out).write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
    print(f"{len(figures)} numbers → {args.out}", file=sys.stderr)
    if args.compare is None:
        return 0
    reference = json.loads(Path(args.compare).read_text())
    reference = {k: v for k, v in reference.items() if k.split("/", 1)[0] in jobs}
    problems = compare(figures, reference, args.tolerance)
    for line in problems:
        print(line)
    print(f"{len(reference)} reference numbers, {len(problems)} differences", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
