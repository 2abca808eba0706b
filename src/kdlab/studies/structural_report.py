"""The structural KD study's report: one table per setting and verdicts computed from the numbers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from kdlab.core.files import write_atomic, write_json
from kdlab.reporting.table import format_table
from kdlab.studies.runner import Stat
from kdlab.studies.verdicts import RULE, word

TIE = 0.003  # differences within ±0.3 points count as ties (our rule)
NAMES = {"accuracy": "token accuracy", "f1": "span F1", "las": "LAS"}


def _stat(row: dict[str, Any], key: str) -> Stat:
    return Stat(list(row[key]["values"]))


def _main(result: dict[str, Any]) -> dict[str, Any] | None:
    rows = [r for r in result["rows"] if r["method"]["name"] == "structural_kd"]
    local = [r for r in rows if r["method"].get("teacher_temperature", "local") == "local"]
    return (local or rows or [None])[0]


def _compare(a: Stat, b: Stat) -> str:
    diff = a.mean - b.mean
    spread = max(a.std, b.std)
    inside = " (inside the seed spread)" if abs(diff) <= spread else ""
    return f"{diff * 100:+.2f} pt{inside}"


def main_tau(result: dict[str, Any]) -> str:
    """The official configuration's τ of the setting's structural case (see ``methods.structured``)."""
    from kdlab.methods.structured import CASE_TEMPERATURE

    main = _main(result)
    return "?" if main is None else f"{CASE_TEMPERATURE.get(main['case'], 1.0):g}"


def verdicts(result: dict[str, Any]) -> list[str]:
    """The paper's claims for one setting, each held / did not hold, with the measured differences."""
    metric, rows = result["metric"], result["rows"]
    main = _main(result)
    out = []
    if main is None:
        return out
    s = _stat(main, metric)
    others = [r for r in rows if r is not main and r["method"]["name"] != "structural_kd"]
    worse = [r["label"] for r in others if s.mean < _stat(r, metric).mean - TIE]
    details = "; ".join(f"vs {r['label']} {_compare(s, _stat(r, metric))}" for r in others)
    if others:  # the verdict rests on the baseline closest to beating it
        rival = _stat(max(others, key=lambda r: _stat(r, metric).mean), metric)
        out.append(f"**{main['label']} ≥ every baseline (ties ±0.3 pt)**: {word(not worse, s, rival, -TIE)} — "
                   f"{details}.")  # fmt: skip
    base = next((r for r in rows if r["method"]["name"] == "ce"), None)
    variants = [r for r in rows if base is not None and r is not base]
    if base is not None and variants:
        b = _stat(base, metric)
        below = [r["label"] for r in variants if _stat(r, metric).mean < b.mean - TIE]
        lowest = _stat(min(variants, key=lambda r: _stat(r, metric).mean), metric)
        out.append(f"**every KD variant ≥ w/o KD (ties ±0.3 pt)**: {word(not below, lowest, b, -TIE)}"
                   f"{' (below: ' + ', '.join(below) + ')' if below else ''}.")  # fmt: skip
    glob = next((r for r in rows if r["method"].get("teacher_temperature") == "global"), None)
    if glob is not None and glob is not main:
        g = _stat(glob, metric)
        out.append(f"**local τ ≥ global τ (ties ±0.3 pt)**: {word(s.mean >= g.mean - TIE, s, g, -TIE)} "
                   f"({_compare(s, g)}).")  # fmt: skip
    top = {
        r["method"].get("k"): r for r in rows if r["method"]["name"] == "top_k_kd" and not r["method"].get("weighted")
    }
    if 1 in top and 10 in top:
        one, ten = _stat(top[1], metric), _stat(top[10], metric)
        if abs(ten.mean - one.mean) <= TIE:
            approach = "not shown (K = 1 and K = 10 tie within ±0.3 pt)"
        else:
            approach = "held" if abs(s.mean - ten.mean) < abs(s.mean - one.mean) else "did not hold"
        out.append(
            f"**Top-K KD approaches Structural KD as K grows**: {approach} — K = 1 {one.mean * 100:.2f}, K = 10 "
            f"{ten.mean * 100:.2f}, {main['label']} {s.mean * 100:.2f}."
        )
    cold = next(
        (r for r in rows if r["method"]["name"] == "structural_kd" and r["method"].get("temperature") == 1.0), None
    )
    if cold is not None and cold is not main:
        c = _stat(cold, metric)
        out.append(
            f"**temperature**: {cold['label']} {c.mean * 100:.2f} vs {main['label']} (τ = {main_tau(result)}) "
            f"{s.mean * 100:.2f} ({_compare(c, s)})."
        )
    best = max(rows, key=lambda r: _stat(r, metric).mean)
    out.append(f"best: {best['label']} {_stat(best, metric).mean * 100:.2f}.")
    if result["name"].endswith("case3"):
        teacher = result["teacher"][metric]
        best = max(rows, key=lambda r: _stat(r, metric).mean)
        out.append(
            f"**case 3 student reaches or beats its teacher** ({teacher * 100:.2f}): "
            f"{'held' if s.mean >= teacher - TIE else 'did not hold'} for {main['label']} ({s.mean * 100:.2f}); best "
            f"student {best['label']} {_stat(best, metric).mean * 100:.2f}."
        )
    return out


def table(result: dict[str, Any]) -> str:
    metric = result["metric"]
    header = ["method", "case", f"{NAMES[metric]} %", "agreement %", "sentence agr. %", "token KL", "run s (Σ seeds)"]
    rows = [["teacher", "", f"{result['teacher'][metric] * 100:.2f}", "", "", "", ""]]
    for r in result["rows"]:
        kl = _stat(r, "kl")
        rows.append([
            r["label"], r["case"], _stat(r, metric).show(), _stat(r, "agreement").show(),
            _stat(r, "sentence_agreement").show(), kl.show(1.0, 4) if kl.values else "-", f"{r['wall_time_s']:.0f}",
        ])  # fmt: skip
    return format_table(header, rows)


def write(
    folder: Path, preset: str, scale: dict[str, Any], results: list[dict[str, Any]], run_seconds: float, runs: int
) -> None:
    """report.md and results.json in ``folder``."""
    lines = [
        f"# Structural KD study ({preset})",
        "",
        f"Generated {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} by `kdlab study structural "
        f"{preset}`: {runs} runs, {run_seconds / 60:.1f} min of run wall time. Mean ± sample std over seeds "
        f"{', '.join(map(str, scale['seeds']))}; test split. 'agreement' = tokens (parsing: heads) on which the "
        "student's decoded structure equals the teacher's; 'token KL' = KL(teacher's token marginals ‖ student's).",
        "",
        f"Verdict rule: {RULE}.",
        "",
        f"Scale: `{scale}`",
    ]
    for result in results:
        lines += ["", f"## {result['title']}", "", "```", table(result), "```", ""]
        lines += [f"- {v}" for v in verdicts(result)]
    write_atomic(folder / "report.md", ("\n".join(lines) + "\n").encode())
    write_json(folder / "results.json", {"preset": preset, "scale": scale, "settings": results})
