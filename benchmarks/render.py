"""Render `kdlab bench --out` JSON files as markdown for benchmarks/RESULTS.md, with issue 8's targets checked.

    python benchmarks/render.py benchmarks/cpu.json [benchmarks/gpu.json ...] [--out benchmarks/RESULTS.md]

Without --out the markdown goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kdlab.bench import markdown
from kdlab.core.files import write_atomic
from kdlab.reporting.pages import markdown_table

CPU_PAIR = "fmnist-resnet20-cnn8"
GPU_PAIR = "cifar-resnet32x4-resnet8x4"


def _check(target: str, value: float | None, text: str, met: bool) -> list[str]:
    """A target's row: what was measured (``text`` formats ``value``) and whether it was met."""
    if value is None:
        return [target, "-", "not measured"]
    return [target, text.format(value), "met" if met else "missed"]


def targets(result: dict[str, Any]) -> list[list[str]]:
    """Issue 8's targets that this result measures: [target, measured, met/missed]."""
    pairs, device = {p["name"]: p for p in result["pairs"]}, result["settings"]["device"]
    rows: list[list[str]] = []
    if device == "cpu" and CPU_PAIR in pairs:
        ratios = pairs[CPU_PAIR]["ratios"]
        value = ratios.get("cached_epoch_per_student_epoch")
        rows.append(
            _check("cached-teacher epoch ≤ 1.2× the student-alone epoch", value, "{:.2f}×", (value or 0) <= 1.2)
        )
        for mode in ("online", "cached"):
            value = ratios.get(f"{mode}_speedup_over_reference")
            target = f"kdlab, teacher {mode}: ≥ 1.5× the reference loop's images/s"
            rows.append(_check(target, value, "{:.2f}×", (value or 0) >= 1.5))
    pair = pairs.get(GPU_PAIR)
    if device.startswith("cuda") and pair is not None and pair["batch_size"] == 512:
        for mode, goal in (("online", 60_000), ("cached", 100_000)):
            figures = pair["modes"].get(mode, {})
            value = figures.get("images_per_s")
            rows.append(_check(f"resnet32x4→resnet8x4, batch 512, teacher {mode}: ≥ {goal:,} images/s", value,
                               "{:,.0f}", (value or 0) >= goal))  # fmt: skip
            hours = figures.get("projected_recipe_h")
            if hours is not None:
                rows.append([f"projected 240-epoch CIFAR-100 recipe, teacher {mode}", f"{hours:.2f} h", "-"])
    return rows


def render(paths: list[Path]) -> str:
    sections = []
    for path in paths:
        result = json.loads(path.read_text())
        compiled = ", student compiled" if result["settings"]["compile"] else ""
        lines = [f"## {result['settings']['device']}{compiled} ({path.name})", "", markdown(result)]
        checked = targets(result)
        if checked:
            lines += ["Targets of issue 8:", "", markdown_table(["target", "measured", "verdict"], checked), ""]
        sections.append("\n".join(lines))
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", type=Path, help="JSON files written by kdlab bench --out")
    p.add_argument("--out", type=Path, default=None, help="write a whole results document here")
    args = p.parse_args(argv)
    body = render(args.results)
    if args.out is None:
        print(body)
    else:
        document = (
            "# kdlab bench results\n\nWritten by benchmarks/render.py from "
            + ", ".join(f"`{p}`" for p in args.results)
            + "; see docs/benchmarks.md for what each figure means.\n\n"
            + body
        )
        write_atomic(args.out, document.encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
