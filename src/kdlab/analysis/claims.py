"""Ojha et al.'s claims, checked against the measured numbers of a ``kdlab analyze`` run (one paragraph each)."""

from __future__ import annotations

import re
import statistics
from typing import Any

from kdlab.analysis.stats import RULE, Estimate, verdict


def method_of(label: str) -> str:
    """``"kd seed1"`` → ``"kd"``; independent students (``ind seedN``, ``ind seedN′``) → ``"ind"``."""
    return re.sub(r" seed\d+′*$", "", label)


def by_method(values: dict[str, float]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for label, value in values.items():
        out.setdefault(method_of(label), []).append(value)
    return out


def show(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def _mean(values: list[float]) -> float:
    return statistics.fmean(values)


PAPER_KD_WIN_RATE = 55.0  # Ojha et al.: KD students' CAMs beat an independent student's on more than 55 % of images


def localisation(results: dict[str, Any]) -> str:
    loc = results["localisation"]
    if "skipped" in loc:
        return f"Grad-CAM win rate: not measured ({loc['skipped']})."
    if "control" not in loc:
        return "Grad-CAM win rate: no verdict — it needs at least two independent students (the control)."
    control = Estimate(**loc["control"])
    methods = {m: Estimate(**e) for m, e in loc["methods"].items()}
    parts = [f"{m} {e.show()} % ({verdict(e, control, paper=PAPER_KD_WIN_RATE if m == 'kd' else None)})"
             for m, e in methods.items()]  # fmt: skip
    kd = methods.get("kd")
    claim = verdict(kd, control, paper=PAPER_KD_WIN_RATE) if kd is not None else "not measured (no KD student)"
    comparisons = (len(loc["pairs"]) * len(loc["references"]) + control.pairs) * loc["images"]
    ties = sum(e.ties for e in methods.values()) + control.ties
    return (
        "Claim: a KD student's Grad-CAM is closer to its teacher's than an independent student's is, on more than "
        f"{PAPER_KD_WIN_RATE:.0f} % of images — {claim}. Win rates (mean ± std over (student seed × reference seed) "
        f"pairs [{100 * loc['bootstrap']['confidence']:.0f} % bootstrap interval over {loc['bootstrap']['resampled']}]"
        f", verdict against the control): " + ", ".join(parts) + f"; control (independent students against each "
        f"other, {control.pairs} ordered pairs) {control.show()} %, its pairs ranging "
        f"{min(loc['control_pairs'].values()):.2f}–{max(loc['control_pairs'].values()):.2f} %. Ties, counted half: "
        f"{ties} of {comparisons:,} per-image comparisons. Rule — {RULE}."
    )


def vulnerability(results: dict[str, Any]) -> str:
    adv = results["adversarial"]
    teacher = by_method({k: v for k, v in adv["teacher_attack"].items() if k in results["models"]})
    ind = _mean(teacher.get("ind", [float("nan")]))
    gains = {m: _mean(v) - ind for m, v in teacher.items() if m != "ind"}
    held = bool(gains) and all(g > 0 for g in gains.values())
    text = (
        f"Claim: attacks crafted on the teacher (ε = {adv['epsilon']:.3f}, teacher fooled on "
        f"{adv['teacher_attack']['attacked']:.1f} %) fool distilled students more often than independent ones — "
        f"{'held' if held else 'did not hold'}: Ind {ind:.2f} %, "
        + ", ".join(f"{m} {show(teacher[m])} % ({g:+.2f})" for m, g in gains.items())
        + "."
    )
    if "control_attack" in adv:
        control = by_method({k: v for k, v in adv["control_attack"].items() if k in results["models"]})
        c_ind = _mean(control.get("ind", [float("nan")]))
        gaps = {m: _mean(v) - c_ind for m, v in control.items() if m != "ind"}
        flat = all(abs(g) <= 2 for g in gaps.values())
        text += (
            " Control: the same attack crafted on the independent student Ind′ should fool every student alike "
            f"(|Δ| ≤ 2 points) — {'held' if flat else 'did not hold'}: "
            + ", ".join(f"{m} {g:+.2f}" for m, g in gaps.items())
            + " points against Ind."
        )
    return text


def domains(results: dict[str, Any]) -> str:
    if "domains" not in results:
        return ""
    parts, verdicts = [], []
    for method in sorted({method_of(n) for n in results["models"]} - {"ind"}):
        gains = {}
        for domain, row in results["domains"].items():
            mine = _mean([row[n]["accuracy"] for n in results["models"] if method_of(n) == method])
            ind = _mean([row[n]["accuracy"] for n in results["models"] if method_of(n) == "ind"])
            gains[domain] = mine - ind
        verdicts.append(
            gains.get("color", 0) >= 2 and gains.get("texture", 0) >= 2 and abs(gains.get("orig", 0)) <= 0.5
        )
        parts.append(f"{method}: " + ", ".join(f"{d} {g:+.2f}" for d, g in gains.items()))
    return (
        "Claim: students trained on the original domain only inherit the teacher's knowledge of the colour and "
        "texture domains (clear gains over Ind there, orig within ±0.5 points) — "
        + (
            "held for every method"
            if all(verdicts)
            else "held for " + str(sum(verdicts)) + f" of {len(verdicts)} methods"
        )
        + ": accuracy gains over Ind in points — "
        + "; ".join(parts)
        + "."
    )


def boundaries(results: dict[str, Any]) -> str:
    table = results.get("boundaries_by_domain") or {"test": results["boundaries"]}
    parts = []
    for domain, row in table.items():
        means = {m: _mean([v["iou"] for v in vals]) for m, vals in _group_dicts(row).items()}
        parts.append(f"{domain}: " + ", ".join(f"{m} {v:.3f}" for m, v in means.items()))
    return (
        "Decision-boundary similarity to the teacher (IoU of predicted regions on planes through test-image "
        "triplets; the paper finds KD/Hint students above Ind, most on the shifted domains): " + "; ".join(parts) + "."
    )


def _group_dicts(row: dict[str, dict[str, float]]) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {}
    for label, value in row.items():
        out.setdefault(method_of(label), []).append(value)
    return out


def invariance(results: dict[str, Any]) -> str:
    curves = results["invariance"]["jitter"]
    means = {
        m: _mean([_mean(curves[n]) for n in results["models"] if method_of(n) == m])
        for m in {method_of(n) for n in results["models"]}
    }
    ind = means.pop("ind")
    teacher = _mean(curves["teacher"])
    if teacher <= ind:
        verdict = "not testable here: the teacher is no more invariant than the independent student"
    else:
        verdict = "held" if any(v > ind for v in means.values()) else "did not hold"
    return (
        "Claim: students inherit the teacher's invariance to colour changes (agreement between an image and its "
        f"brightness/contrast-jittered copy, mean over strengths 0.3–0.6) — {verdict}: "
        f"teacher {teacher:.2f} %, Ind {ind:.2f} %, " + ", ".join(f"{m} {v:.2f} %" for m, v in means.items()) + "."
    )


def paragraphs(results: dict[str, Any]) -> list[str]:
    texts = [localisation(results), vulnerability(results), domains(results), boundaries(results), invariance(results)]
    return [t for t in texts if t]
