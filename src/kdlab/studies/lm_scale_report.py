"""The language-model study's second and third parts: top-k cached teachers against the full-vocabulary loss, and a
teacher with another tokenizer against one with the student's — tables and verdicts computed from the numbers."""

from __future__ import annotations

import math
from typing import Any

from kdlab.reporting.table import format_table
from kdlab.studies.lm import HYBRID, HYBRID_CE, OTHER_CE, SAME_CE, SAME_KD, ULD, ULD_CE
from kdlab.studies.runner import Stat
from kdlab.studies.verdicts import word


def _get(runs: list[dict[str, Any]], key: str, who: str = "student") -> Stat:
    return Stat([r[who]["test"][key] for r in runs if key in r.get(who, {}).get("test", {})])


def _tokens_s(runs: list[dict[str, Any]]) -> Stat:
    return Stat([r["train_input_tokens"] * r["epochs"] / max(r["train_time_s"], 1e-9) for r in runs])


def top_k_section(rows: list[dict[str, Any]]) -> list[str]:
    """The top-k table (test CE, agreement, KL, the cache's bytes per token, tokens/s) and its verdicts."""
    lines, stats = [], []
    for row in rows:
        runs = row["runs"]
        source = runs[0].get("teacher_source", {})
        s = {"nll": _get(runs, "nll"), "agreement": _get(runs, "agreement"), "kl": _get(runs, "kl"),
             "tokens_s": _tokens_s(runs)}  # fmt: skip
        stats.append(s)
        per = f"{source['bytes_per_token']:.0f}" if "bytes_per_token" in source else "-"
        lines.append([row["label"], s["nll"].show(1.0, 3), s["agreement"].show(), s["kl"].show(1.0, 4), per,
                      s["tokens_s"].show(1.0, 0)])  # fmt: skip
    table = format_table(["forward KL, teacher from", "test CE", "agreement %", "KL", "cache bytes / token",
                          "tokens/s"], lines)  # fmt: skip
    full = stats[0]["nll"]
    verdicts = []
    for row, s in zip(rows[1:], stats[1:], strict=True):
        spread = max(full.std, s["nll"].std)
        held = s["nll"].mean <= full.mean + spread
        verdicts.append(
            f"**The top-{row['k']} cache keeps the full-vocabulary loss's test CE (within the seed spread)**: "
            f"{'held' if held else 'did not hold'} — {s['nll'].show(1.0, 3)} vs {full.show(1.0, 3)} "
            f"({s['nll'].mean - full.mean:+.3f} nats; spread {spread:.3f})."
        )
    return ["```", table, "```", "", *[f"- {v}" for v in verdicts]]


def _gain(alone: Stat, distilled: Stat) -> tuple[float, float]:
    """The mean drop of CE per byte from ``alone`` to ``distilled`` and the spread of that difference."""
    return alone.mean - distilled.mean, math.hypot(alone.std, distilled.std)


def cross_section(rows: list[dict[str, Any]]) -> list[str]:
    """The cross-tokenizer table (CE per byte of the test texts, the student's own CE per token, aligned ULD,
    tokens/s) and its verdicts."""
    stats, lines = {}, []
    for row in rows:
        runs = row["runs"]
        s = {"per_byte": _get(runs, "nll_per_byte"), "nll": _get(runs, "nll"), "uld": _get(runs, "uld"),
             "tokens_s": _tokens_s(runs)}  # fmt: skip
        stats[row["label"]] = s
        lines.append([row["label"], runs[0].get("vocab_size", ""), s["per_byte"].show(1.0, 4), s["nll"].show(1.0, 3),
                      s["uld"].show(1.0, 4), s["tokens_s"].show(1.0, 0)])  # fmt: skip
    teacher = next((r["runs"][0]["teacher"]["test"] for r in rows if "teacher" in r["runs"][0]), {})
    lines.insert(0, ["teacher", "", f"{teacher.get('nll_per_byte', float('nan')):.4f}", f"{teacher.get('nll', 0):.3f}",
                     "", ""])  # fmt: skip
    table = format_table(["condition", "student vocabulary", "test CE / byte", "test CE / token", "aligned ULD",
                          "tokens/s"], lines)  # fmt: skip
    verdicts = []
    alone = stats.get(OTHER_CE)

    def beats(claim: str, better: str, worse: str) -> None:
        if better in stats and worse in stats:
            a, b = stats[better]["per_byte"], stats[worse]["per_byte"]
            verdicts.append(f"**{claim} (CE per byte)**: {word(a.mean < b.mean, a, b)} — {a.show(1.0, 4)} vs "
                            f"{b.show(1.0, 4)}.")  # fmt: skip

    beats("ULD alone from a teacher with another tokenizer beats the student alone", ULD, OTHER_CE)
    beats("CE + ULD (ULD as its paper trains it) beats the student alone", ULD_CE, OTHER_CE)
    beats("The hybrid loss beats ULD alone", HYBRID, ULD)
    beats("CE + hybrid beats CE + ULD", HYBRID_CE, ULD_CE)
    cross = [stats[label] for label in (ULD, HYBRID, ULD_CE, HYBRID_CE) if label in stats]
    same_alone, same_kd = stats.get(SAME_CE), stats.get(SAME_KD)
    if same_alone and same_kd and alone and cross:
        best = min(cross, key=lambda s: s["per_byte"].mean)
        cross_gain, cross_spread = _gain(alone["per_byte"], best["per_byte"])
        same_gain, same_spread = _gain(same_alone["per_byte"], same_kd["per_byte"])
        spread = max(cross_spread, same_spread)
        held = cross_gain >= same_gain - spread
        verdicts.append(
            f"**Cross-tokenizer KD (its best loss) gains as much over its student alone as same-tokenizer KD does (CE "
            f"per byte)**: {'held' if held else 'did not hold'} — {cross_gain:+.4f} vs {same_gain:+.4f} nats per byte "
            f"(spread {spread:.4f})."
        )
    return ["```", table, "```", "", *[f"- {v}" for v in verdicts]]
