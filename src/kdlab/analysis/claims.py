"""Ojha et al.'s claims, checked against the measured numbers of a ``kdlab analyze`` run (one paragraph each)."""

from __future__ import annotations

import re
import statistics
from typing import Any

from kdlab.analysis.comparison import verdicts
from kdlab.analysis.stats import RULE, Estimate


def method_of(label: str) -> str:
    """``"kd seed1"`` → ``"kd"``; independent students (``ind seedN``, ``ind seedN′``) → ``"ind"``."""
    return re.sub(r" seed\d+′*$", "", label)


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
    words = verdicts(loc, paper={"kd": PAPER_KD_WIN_RATE})
    parts = [f"{m} {e.show()} % ({words[m]})" for m, e in methods.items()]
    claim = words.get("kd", "not measured (no KD student)")
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


def _listing(block: dict[str, Any], higher: bool = True) -> str:
    """``method Δ ± std [low, high] (verdict)`` for every method of a comparison block (points)."""
    v = verdicts(block, higher)
    return ", ".join(f"{m} {Estimate(**e).show(signed=True)} ({v[m]})" for m, e in block["methods"].items())


def _control(block: dict[str, Any]) -> str:
    if "control" not in block:
        return "no control (it needs at least two independent students)"
    c = Estimate(**block["control"])
    return f"control (independent students against each other, {c.pairs} ordered pairs) {c.show(signed=True)}"


def _tally(v: dict[str, str]) -> str:
    held = [m for m, word in v.items() if word == "held"]
    if held and len(held) == len(v):
        return "held for every method"
    return f"held for {len(held)} of {len(v)} methods" + (f" ({', '.join(held)})" if held else "")


def _intervals(block: dict[str, Any]) -> str:
    boot = block["bootstrap"]
    return (
        f"mean ± std over (student seed × reference seed) pairs [{100 * boot['confidence']:.0f} % bootstrap interval "
        f"over {boot['resampled']}]"
    )


def vulnerability(results: dict[str, Any]) -> str:
    adv = results["adversarial"]
    head = (
        f"Claim: attacks crafted on the teacher (ε = {adv['epsilon']:.3f}, teacher fooled on "
        f"{adv['teacher_attack']['attacked']:.1f} % of {adv['images']} images) fool distilled students more often "
        "than independent ones"
    )
    if "transfer" not in adv:
        return f"{head} — not measured: the attack fooled the teacher on no image."
    block = adv["transfer"]
    ind = _mean([v for k, v in adv["teacher_attack"].items() if method_of(k) == "ind" and k in results["models"]])
    text = (
        f"{head} — {_tally(verdicts(block))}. Fooling rate minus the independent students' (points, per image that "
        f"fooled the teacher; {_intervals(block)}): {_listing(block)}; {_control(block)}; the independent students "
        f"are fooled on {ind:.2f} % of them."
    )
    if "control_transfer" in adv:
        check = adv["control_transfer"]
        unrelated = "held" if all(word != "held" for word in verdicts(check).values()) else "did not hold"
        if "control" not in check:
            unrelated = "no verdict (it needs three independent students: one attacked, two to compare)"
        text += (
            " Check: the same attack crafted on the independent student Ind′, unrelated to the teacher, should fool "
            f"no method conclusively more than the other independent students — {unrelated}: {_listing(check)}; "
            f"{_control(check)}."
        )
    return text


def domains(results: dict[str, Any]) -> str:
    if "domain_transfer" not in results:
        return ""
    blocks = results["domain_transfer"]
    per_domain = {d: verdicts(b) for d, b in blocks.items()}
    first = next(iter(blocks.values()))
    held = {m: "held" if all(per_domain.get(d, {}).get(m) == "held" for d in ("color", "texture")) else "-"
            for m in first["methods"]}  # fmt: skip
    return (
        "Claim: students trained on the original domain only inherit the teacher's knowledge of the colour and "
        f"texture domains (accuracy above the independent students' there) — {_tally(held)}. "
        f"Accuracy minus the independent students' (points, per test image; {_intervals(first)}): "
        + "; ".join(f"{d}: {_listing(b)}, {_control(b)}" for d, b in blocks.items())
        + "."
    )


def boundaries(results: dict[str, Any]) -> str:
    blocks = results.get("boundary_transfer", {})
    if not blocks:
        return ""
    return (
        "Decision-boundary similarity to the teacher (the paper finds KD/Hint students' boundaries closer to the "
        "teacher's than independent students', most on the shifted domains): region IoU with the teacher minus the "
        f"independent students' (points, per test-image triplet; {_intervals(next(iter(blocks.values())))}) — "
        + "; ".join(f"{d}: {_listing(b)}, {_control(b)}" for d, b in blocks.items())
        + "."
    )


def representations(results: dict[str, Any]) -> str:
    block = results.get("cka_transfer")
    if block is None:
        return ""
    return (
        "Claim (App. 11.6): a distilled student's representation is closer to its teacher's than an independent "
        f"student's — {_tally(verdicts(block))}. Linear CKA of the last stages minus the independent students' "
        f"(points; {_intervals(block)}): {_listing(block)}; {_control(block)}."
    )


def invariance(results: dict[str, Any]) -> str:
    block = results["invariance_transfer"]["jitter"]
    v = verdicts(block)
    teacher = v.pop("teacher", "not measured")
    if teacher != "held":
        claim = f"not testable here: the teacher is not more invariant than the independent students ({teacher})"
    else:
        claim = _tally(v)
    return (
        "Claim: students inherit the teacher's invariance to colour changes (agreement between an image and its "
        f"brightness/contrast-jittered copy, per image averaged over strengths 0.3–0.6) — {claim}. Agreement minus "
        f"the independent students' (points; {_intervals(block)}): " + _listing(block) + f"; {_control(block)}."
    )


def paragraphs(results: dict[str, Any]) -> list[str]:
    texts = [
        localisation(results),
        vulnerability(results),
        domains(results),
        boundaries(results),
        invariance(results),
        representations(results),
    ]
    return [t for t in texts if t]
