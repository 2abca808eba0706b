"""The language-model study's report: the teacher–student gap, one table of mean ± std over seeds, and a verdict per
claim of the GKD paper computed from the numbers (a difference inside the larger seed spread is not conclusive)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from kdlab.core.files import write_atomic, write_json
from kdlab.reporting.table import format_table
from kdlab.studies.lm_scale_report import cross_section, top_k_section
from kdlab.studies.runner import Stat
from kdlab.studies.verdicts import RULE, word

HEADERS = ["condition", "test CE", "agreement %", "KL", "top-5 overlap %", "ECE %", "teacher logp of samples",
           "tokens/s"]  # fmt: skip


def stats(runs: list[dict[str, Any]]) -> dict[str, Stat]:
    """The study's figures of one condition over its seeds."""
    test = [r["student"]["test"] for r in runs]
    return {
        "nll": Stat([t["nll"] for t in test]),
        "agreement": Stat([t["agreement"] for t in test]),
        "kl": Stat([t["kl"] for t in test]),
        "top5": Stat([t["top5_overlap"] for t in test]),
        "ece": Stat([t["ece"] for t in test]),
        "samples": Stat([t["sample_teacher_logp"] for t in test]),
        "tokens_s": Stat([r["train_input_tokens"] * r["epochs"] / max(r["train_time_s"], 1e-9) for r in runs]),
    }


def table(rows: list[dict[str, Any]], teacher: dict[str, float]) -> str:
    lines = [["teacher", f"{teacher['nll']:.3f}", "", "", "", f"{100 * teacher['ece']:.2f}", "", ""]]
    for row in rows:
        s = row["stats"]
        lines.append([
            row["label"], s["nll"].show(1.0, 3), s["agreement"].show(), s["kl"].show(1.0, 4), s["top5"].show(),
            s["ece"].show(), s["samples"].show(1.0, 3), s["tokens_s"].show(1.0, 0),
        ])  # fmt: skip
    return format_table(HEADERS, lines)


def _claim(
    text: str, a: Stat, b: Stat, names: tuple[str, str], *, lower: bool = False, scale: float = 1.0, digits: int = 3
) -> str:
    """That ``a`` beats ``b`` (``lower``: a smaller value is better, as for cross-entropy)."""
    verdict = word(a.mean < b.mean if lower else a.mean > b.mean, a, b)
    unit = " pt" if scale == 100.0 else ""
    return (f"**{text}**: {verdict} — {names[0]} {a.show(scale, digits)} vs {names[1]} {b.show(scale, digits)} "
            f"({scale * (a.mean - b.mean):+.{digits}f}{unit}).")  # fmt: skip


def _find(rows: list[dict[str, Any]], start: str) -> dict[str, Stat] | None:
    return next((r["stats"] for r in rows if r["label"].startswith(start)), None)


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """The GKD paper's claims at this scale, each held / did not hold on our numbers."""
    out = []
    ce, fkl, rkl = _find(rows, "CE only"), _find(rows, "forward KL"), _find(rows, "reverse KL")
    jsd, seq, gkd = _find(rows, "JSD"), _find(rows, "sequence-level"), _find(rows, "on-policy")
    if fkl and ce:
        out.append(_claim("Distillation (forward KL) lowers the student's test CE below training on the next "
                          "tokens alone", fkl["nll"], ce["nll"], ("forward KL", "CE only"), lower=True))  # fmt: skip
        out.append(_claim("Distilled students agree with the teacher's next token more often", fkl["agreement"],
                          ce["agreement"], ("forward KL", "CE only"), scale=100.0, digits=2))  # fmt: skip
    if gkd and fkl:
        out.append(_claim("On-policy GKD (λ = 0.5, JSD(0.5)) beats supervised forward-KL KD on test CE",
                          gkd["nll"], fkl["nll"], ("GKD", "forward KL"), lower=True))  # fmt: skip
        out.append(_claim("On-policy GKD's students write continuations the teacher finds likelier (the train–"
                          "inference mismatch GKD addresses)", gkd["samples"], fkl["samples"], ("GKD", "forward KL")))
    if gkd and jsd:
        out.append(_claim("On-policy data helps JSD(0.5): GKD beats the same divergence on the data's continuations "
                          "(test CE)", gkd["nll"], jsd["nll"], ("GKD", "supervised JSD(0.5)"), lower=True))  # fmt: skip
        out.append(_claim("… and the teacher finds GKD's samples likelier than supervised JSD(0.5)'s", gkd["samples"],
                          jsd["samples"], ("GKD", "supervised JSD(0.5)")))  # fmt: skip
    if seq and fkl:
        out.append(_claim("Sequence-level KD (the teacher's samples) beats supervised KD on test CE",
                          seq["nll"], fkl["nll"], ("sequence-level", "forward KL"), lower=True))  # fmt: skip
    for name, stat in (("reverse KL", rkl), ("JSD(0.5)", jsd)):
        if stat and fkl:
            out.append(_claim(f"Mode-seeking {name} gives samples the teacher rates higher than forward KL's",
                              stat["samples"], fkl["samples"], (name, "forward KL")))  # fmt: skip
    best = min(rows, key=lambda r: r["stats"]["nll"].mean)
    faithful = max(rows, key=lambda r: r["stats"]["agreement"].mean)
    out.append(f"lowest test CE: {best['label']} ({best['stats']['nll'].show(1.0, 3)}); highest agreement: "
               f"{faithful['label']} ({faithful['stats']['agreement'].show()}).")  # fmt: skip
    return out


def write(
    folder: Path, preset: str, scale: dict[str, Any], parts: dict[str, list[dict[str, Any]]], run_seconds: float,
    runs: int,
) -> None:
    """report.md and results.json in ``folder``: the divergences and data modes (``parts["methods"]``), the top-k
    caches (``"top_k"``) and the cross-tokenizer pair (``"cross"``)."""
    rows = parts["methods"]
    for row in rows:
        row["stats"] = stats(row["runs"])
    first = rows[0]["runs"][0]
    teacher = first["teacher"]["test"]
    alone = rows[0]["stats"]["nll"]
    lines = [
        f"# Language-model distillation study ({preset})",
        "",
        f"Generated {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} by `kdlab study lm {preset}`: "
        f"{runs} runs, {run_seconds / 60:.1f} min of run wall time. Mean ± sample std over seeds "
        f"{', '.join(map(str, scale['seeds']))}, on the held-out files of the `stdlib` corpus ({scale['test_size']} "
        f"sequences of {scale['max_length']} tokens, the first {scale['prompt_length']} of each its prompt; figures "
        "over the continuation tokens). test CE = the student's next-token cross-entropy (nats per token); agreement = "
        "tokens whose top-1 prediction the student shares with the teacher; KL = mean KL(teacher ‖ student) per "
        "token; teacher logp of samples = the teacher's mean log-probability per token of continuations the student "
        "samples (temperature 1) from held-out prompts; tokens/s = training sequence tokens per second of training "
        "(generation and per-epoch validation included).",
        "",
        f"Scale: `{scale}`. Teacher: GPT-2 style, {scale['teacher_layers']} blocks × {scale['teacher_width']} "
        f"({first['teacher']['parameters']:,} parameters), trained for {scale['teacher_epochs']} epochs on the "
        f"corpus; student: {scale['student_layers']} blocks × {scale['student_width']} "
        f"({first['student']['parameters']:,} parameters). **Gap**: the teacher's test CE is "
        f"{teacher['nll']:.3f}, the student trained alone reaches {alone.show(1.0, 3)} "
        f"({alone.mean - teacher['nll']:+.3f} nats per token). Every student starts from random weights (the GKD "
        "paper starts its on-policy students from supervised fine-tuned ones), so early on-policy continuations are "
        "the samples of an untrained model.",
        "",
        "```",
        table(rows, teacher),
        "```",
        "",
        *[f"- {v}" for v in verdicts(rows)],
        "",
        f"Verdict rule: {RULE}.",
        "",
        "## Top-k teacher caches",
        "",
        "Forward KL with the teacher's top-k next-token log-probabilities cached once (float16 values, int32 ids, the "
        "rest of the mass as one tail bin), against the full-vocabulary teacher online; same student, steps and "
        "seeds as above.",
        "",
        *top_k_section(parts.get("top_k", [])),
        "",
        "## A teacher with another tokenizer",
        "",
        f"The teacher (its {scale['vocab_size']:,}-token BPE) distils a student that reads a "
        f"{scale['other_vocab_size']}-token BPE of the same corpus: ULD and the hybrid loss at byte-aligned "
        "positions, against the same student architecture on the teacher's tokenizer. No prompts here (every token "
        "trained and measured), so that CE per byte of the test texts compares students whose tokens differ.",
        "",
        *cross_section(parts.get("cross", [])),
    ]
    write_atomic(folder / "report.md", ("\n".join(lines) + "\n").encode())
    numbers = {name: [{"label": r["label"], "method": r.get("method"), "k": r.get("k"),
                       "runs": [r_["run_folder"] for r_ in r["runs"] if "run_folder" in r_],
                       **({k: vars(v) for k, v in r["stats"].items()} if "stats" in r else {})} for r in part]
               for name, part in parts.items()}  # fmt: skip
    write_json(folder / "results.json", {"preset": preset, "scale": scale, "teacher": teacher, "conditions": numbers})
