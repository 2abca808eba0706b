"""The encoder study's report: one table of mean ± std over seeds and a verdict per claim, computed from the
numbers (a difference inside the larger seed spread is called not conclusive)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from kdlab.core.files import write_atomic, write_json
from kdlab.reporting.table import format_table
from kdlab.studies.runner import Stat
from kdlab.studies.verdicts import RULE, word

HEADERS = ["method", "accuracy %", "agreement %", "KL", "ECE %", "train agr. %", "CKA last [CLS]", "s / epoch"]


def stats(runs: list[dict[str, Any]]) -> dict[str, Stat]:
    """The study's figures of one condition over its seeds."""
    test = [r["student"]["test"] for r in runs]
    cka = [next(iter(r["student"].get("cka", {}).values()), {}).get("linear") for r in runs]
    return {
        "accuracy": Stat([t["accuracy"] for t in test]),
        "agreement": Stat([t["agreement"] for t in test]),
        "kl": Stat([t["kl"] for t in test]),
        "ece": Stat([t["ece"] for t in test]),
        "train_agreement": Stat([r["student"]["train"]["agreement"] for r in runs]),
        "cka": Stat([c for c in cka if c is not None]),
        "epoch_s": Stat([r["train_time_s"] / max(r["epochs"], 1) for r in runs]),
    }


def table(rows: list[dict[str, Any]], teacher: dict[str, float]) -> str:
    lines = [["teacher (fine-tuned all-MiniLM-L6-v2)", f"{100 * teacher['accuracy']:.2f}", "", "",
              f"{100 * teacher['ece']:.2f}", "", "", ""]]  # fmt: skip
    for row in rows:
        s = row["stats"]
        lines.append([
            row["label"], s["accuracy"].show(), s["agreement"].show(), s["kl"].show(1.0, 4), s["ece"].show(),
            s["train_agreement"].show(), s["cka"].show(1.0, 3), s["epoch_s"].show(1.0, 2),
        ])  # fmt: skip
    return format_table(HEADERS, lines)


def _find(rows: list[dict[str, Any]], name: str) -> dict[str, Stat] | None:
    return next((r["stats"] for r in rows if r["method"]["name"] == name), None)


def _claim(text: str, a: Stat, b: Stat, names: tuple[str, str], *, as_good: bool = False) -> str:
    """A claim that ``a`` beats ``b`` (``as_good``: that ``a`` is no worse than ``b`` beyond the seed spread)."""
    spread = max(a.std, b.std)
    if as_good:
        held = a.mean >= b.mean - spread
        verdict = (
            ("held" + (" (within the seed spread)" if abs(a.mean - b.mean) <= spread else ""))
            if held
            else ("did not hold")
        )
    else:
        verdict = word(a.mean > b.mean, a, b)
    return (f"**{text}**: {verdict} — {names[0]} {a.show()} vs {names[1]} {b.show()} "
            f"({100 * (a.mean - b.mean):+.2f} pt).")  # fmt: skip


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """The papers' claims, each held / did not hold on our numbers (accuracy unless said)."""
    out = []
    ce, kd, tiny = _find(rows, "ce"), _find(rows, "kd"), _find(rows, "tinybert")
    v1, v2, aguilar = _find(rows, "minilm"), _find(rows, "minilm_v2"), _find(rows, "attention_cls")
    if tiny and kd:
        out.append(_claim("TinyBERT: intermediate-layer transfer helps over prediction-layer KD alone with few data",
                          tiny["accuracy"], kd["accuracy"], ("TinyBERT", "KD")))  # fmt: skip
    if v1 and tiny:
        out.append(_claim("MiniLM: last-layer self-attention transfer is as good as layer-wise transfer (TinyBERT)",
                          v1["accuracy"], tiny["accuracy"], ("MiniLM v1", "TinyBERT"), as_good=True))  # fmt: skip
    if v2 and v1:
        out.append(_claim("MiniLM v2: multi-head Q/K/V relations beat v1's attention + value relation",
                          v2["accuracy"], v1["accuracy"], ("MiniLM v2", "MiniLM v1")))  # fmt: skip
    if aguilar and kd:
        out.append(_claim("Aguilar et al.: internal representations (attention rows + [CLS]) help over KD alone",
                          aguilar["accuracy"], kd["accuracy"], ("Aguilar", "KD")))  # fmt: skip
    if kd and ce:
        out.append(_claim("KD beats the independent student", kd["accuracy"], ce["accuracy"], ("KD", "independent")))
        out.append(_claim("KD students agree with the teacher more than the independent student does",
                          kd["agreement"], ce["agreement"], ("KD", "independent")))  # fmt: skip
    ranked = sorted(rows, key=lambda r: r["stats"]["accuracy"].mean, reverse=True)
    by_agreement = sorted(rows, key=lambda r: r["stats"]["agreement"].mean, reverse=True)
    out.append(f"best accuracy: {ranked[0]['label']} ({ranked[0]['stats']['accuracy'].show()}); best agreement: "
               f"{by_agreement[0]['label']} ({by_agreement[0]['stats']['agreement'].show()}).")  # fmt: skip
    return out


def write(
    folder: Path, preset: str, scale: dict[str, Any], rows: list[dict[str, Any]], run_seconds: float, runs: int
) -> None:
    """report.md and results.json in ``folder``."""
    for row in rows:
        row["stats"] = stats(row["runs"])
    first = rows[0]["runs"][0]
    teacher = first["teacher"]["test"]
    where = Path(first["teacher"]["name"])
    shown = where.relative_to(folder) if where.is_relative_to(folder) else where  # the study's own folder: relative
    lines = [
        f"# Encoder distillation study ({preset})",
        "",
        f"Generated {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} by `kdlab study encoder "
        f"{preset}`: {runs} runs, {run_seconds / 60:.1f} min of run wall time. Mean ± sample std over seeds "
        f"{', '.join(map(str, scale['seeds']))}, on {first['data']} test tweets (a stratified subset). agreement = "
        "test tweets on which student and teacher predict the same class; KL = KL(teacher ‖ student) of the "
        "predictive distributions; CKA = linear CKA of the last blocks' [CLS] states (student vs teacher); s / epoch = "
        "a run's training time over its epochs, its per-epoch validation included.",
        "",
        f"Scale: `{scale}`. Teacher: all-MiniLM-L6-v2 fine-tuned on {scale['teacher_train']:,} tweets "
        f"(`{shown}`, {first['teacher']['parameters']:,} parameters); "
        f"student: {first['student']['parameters']:,} parameters.",
        "",
        "```",
        table(rows, teacher),
        "```",
        "",
        *[f"- {v}" for v in verdicts(rows)],
        "",
        f"Verdict rule: {RULE}.",
    ]
    write_atomic(folder / "report.md", ("\n".join(lines) + "\n").encode())
    numbers = [{"label": r["label"], "method": r["method"], **{k: vars(v) for k, v in r["stats"].items()}}
               for r in rows]  # fmt: skip
    write_json(folder / "results.json", {"preset": preset, "scale": scale, "teacher": teacher, "conditions": numbers})
