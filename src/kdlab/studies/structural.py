"""``kdlab study structural``: Structural KD (Wang et al. 2021) against its baselines on real data.

Settings (those of Wang et al. 2021, *Structural Knowledge Distillation*, on the data this machine has): Turkish UPOS
tagging (BiLSTM-CRF teacher → small
CRF student, case 1a, and small MaxEnt student, case 2a), Turkish dependency parsing (biaffine teacher →
sequence-labelling student, case 1b), Japanese NER (CRF teacher → CRF / MaxEnt students), each student with a few
labelled sentences plus teacher-labelled unlabelled ones; and case 3, a MaxEnt teacher → CRF student trained on
teacher outputs alone. Every condition runs for every seed; the verdicts are computed from the numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kdlab.core.errors import ConfigError, suggest
from kdlab.studies.runner import Stat, StudyContext, merge


@dataclass(frozen=True)
class StructuralScale:
    seeds: tuple[int, ...] = (0, 1, 2)
    teacher_hidden: int = 128
    student_hidden: int = 32
    teacher_epochs: int = 10
    pos_train: int | None = 1000
    pos_labelled: int = 100
    pos_epochs: int = 6
    dep_train: int | None = 1000
    dep_labelled: int = 100
    dep_epochs: int = 6
    ner_labelled: int = 50
    ner_epochs: int = 10
    ner_teacher_epochs: int = 20
    case3_teacher_sentences: int = 100


PRESETS = {
    "quick": StructuralScale(),
    "smoke": StructuralScale(
        seeds=(0,), teacher_hidden=16, student_hidden=8, teacher_epochs=1, pos_train=40, pos_labelled=10,
        pos_epochs=1, dep_train=40, dep_labelled=10, dep_epochs=1, ner_labelled=10, ner_epochs=1,
        ner_teacher_epochs=1, case3_teacher_sentences=20,
    ),
}  # fmt: skip

BASE: dict[str, Any] = {
    "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0, "schedule": "constant"},
    "device": "cpu",
}
TAGGER_METHODS: list[tuple[str, dict[str, Any]]] = [
    ("w/o KD", {"name": "ce"}),
    ("Token KD", {"name": "token_kd"}),
    ("Posterior KD", {"name": "posterior_kd"}),
    ("Top-K KD (K=10)", {"name": "top_k_kd", "k": 10}),
    ("weighted Top-K KD", {"name": "top_k_kd", "k": 10, "weighted": True}),
    ("Structural KD (local τ)", {"name": "structural_kd", "teacher_temperature": "local"}),
    ("Structural KD (global τ)", {"name": "structural_kd", "teacher_temperature": "global"}),
    ("Structural KD (τ = 1)", {"name": "structural_kd", "temperature": 1.0}),
    ("Top-K KD (K=1)", {"name": "top_k_kd", "k": 1}),
]
PARSER_METHODS: list[tuple[str, dict[str, Any]]] = [
    ("w/o KD", {"name": "ce"}),
    ("Top-1 KD (teacher's tree)", {"name": "top_k_kd", "k": 1}),
    ("Structural KD (head selection, local τ)", {"name": "structural_kd", "arc_marginals": "head_selection"}),
    ("Structural KD (matrix-tree, local τ)", {"name": "structural_kd", "arc_marginals": "matrix_tree"}),
    ("Structural KD (head selection, global τ)", {"name": "structural_kd", "teacher_temperature": "global"}),
    ("Structural KD (head selection, τ = 1)", {"name": "structural_kd", "temperature": 1.0}),
]
CASE3_METHODS = [
    m for m in TAGGER_METHODS if m[0] not in ("w/o KD", "Structural KD (global τ)", "Structural KD (τ = 1)")
]


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-").replace("--", "-")


def _settings(scale: StructuralScale) -> list[dict[str, Any]]:
    """Every setting: its data, teacher, students and methods."""
    tagger = {"name": "tagger", "hidden": scale.student_hidden}
    teacher = {"name": "tagger", "head": "crf", "hidden": scale.teacher_hidden}
    pos = {"name": "turkish_pos", "batch_size": 32, "eval_batch_size": 256}
    dep = {"name": "turkish_deps", "batch_size": 32, "eval_batch_size": 256}
    ner = {"name": "hironsan_ner", "batch_size": 16, "eval_batch_size": 256}
    return [
        {"name": "pos-crf", "title": "Turkish UPOS, BiLSTM-CRF teacher → small CRF student (case 1a)",
         "teacher": ("pos-crf", {"data": pos, "student": teacher, "epochs": scale.teacher_epochs}),
         "data": {**pos, "train_size": scale.pos_train, "labelled": scale.pos_labelled},
         "student": {**tagger, "head": "crf"}, "epochs": scale.pos_epochs, "methods": TAGGER_METHODS},
        {"name": "pos-maxent", "title": "Turkish UPOS, BiLSTM-CRF teacher → small MaxEnt student (case 2a)",
         "teacher": ("pos-crf", {"data": pos, "student": teacher, "epochs": scale.teacher_epochs}),
         "data": {**pos, "train_size": scale.pos_train, "labelled": scale.pos_labelled},
         "student": {**tagger, "head": "maxent"}, "epochs": scale.pos_epochs, "methods": TAGGER_METHODS},
        {"name": "pos-case3", "title": "Turkish UPOS, MaxEnt teacher → CRF student on teacher outputs alone (case 3)",
         "teacher": ("pos-maxent-small", {"data": {**pos, "train_size": scale.case3_teacher_sentences},
                                          "student": {**teacher, "head": "maxent"}, "epochs": scale.teacher_epochs}),
         "data": {**pos, "train_size": scale.pos_train, "labelled": 0},
         "student": {**tagger, "head": "crf"}, "epochs": scale.pos_epochs, "methods": CASE3_METHODS,
         "method": {"teacher_annealing": False, "ce_weight": 0.0}},
        {"name": "dep", "title": "Turkish dependency parsing, biaffine teacher → sequence-labelling student (case 1b)",
         "teacher": ("dep-biaffine", {"data": dep, "epochs": scale.teacher_epochs,
                                      "student": {"name": "biaffine", "hidden": scale.teacher_hidden, "layers": 2}}),
         "data": {**dep, "train_size": scale.dep_train, "labelled": scale.dep_labelled},
         "student": {**tagger, "head": "maxent", "hidden": 2 * scale.student_hidden}, "epochs": scale.dep_epochs,
         "methods": PARSER_METHODS},
        {"name": "ner-crf", "title": "Japanese NER, BiLSTM-CRF teacher → small CRF student (case 1a)",
         "teacher": ("ner-crf", {"data": ner, "student": teacher, "epochs": scale.ner_teacher_epochs}),
         "data": {**ner, "labelled": scale.ner_labelled}, "student": {**tagger, "head": "crf"},
         "epochs": scale.ner_epochs, "methods": TAGGER_METHODS},
        {"name": "ner-maxent", "title": "Japanese NER, BiLSTM-CRF teacher → small MaxEnt student (case 2a)",
         "teacher": ("ner-crf", {"data": ner, "student": teacher, "epochs": scale.ner_teacher_epochs}),
         "data": {**ner, "labelled": scale.ner_labelled}, "student": {**tagger, "head": "maxent"},
         "epochs": scale.ner_epochs, "methods": TAGGER_METHODS},
    ]  # fmt: skip


METRICS = {"turkish_pos": ("accuracy", "agreement"), "turkish_deps": ("las", "agreement"),
           "hironsan_ner": ("f1", "agreement")}  # fmt: skip


def run_setting(ctx: StudyContext, scale: StructuralScale, setting: dict[str, Any]) -> dict[str, Any]:
    name, settings = setting["teacher"]
    (teacher,) = ctx.teachers(name, settings, [0])
    metric, fidelity = METRICS[setting["data"]["name"]]
    rows = []
    for label, method in setting["methods"]:
        options = {**setting.get("method", {}), **method}
        if options["name"] == "ce":
            options = {"name": "ce"}
        runs = ctx.distill(setting["name"], slug(label), {
            "teacher": str(teacher), "data": setting["data"], "student": setting["student"],
            "epochs": setting["epochs"], "seeds": list(scale.seeds), "method": options,
        })["main"]  # fmt: skip
        test = [r["student"]["test"] for r in runs]
        rows.append({
            "label": label, "method": options, "case": runs[0]["method"].get("case", "none"),
            metric: Stat([t[metric] for t in test]).__dict__, "agreement": Stat([t[fidelity] for t in test]).__dict__,
            "sentence_agreement": Stat([t["sentence_agreement"] for t in test]).__dict__,
            "kl": Stat([t["kl"] for t in test if "kl" in t]).__dict__,
            "wall_time_s": sum(r["wall_time_s"] for r in runs),
        })  # fmt: skip
    teacher_test = runs[0]["teacher"]["test"]
    return {"name": setting["name"], "title": setting["title"], "metric": metric, "rows": rows,
            "teacher": {metric: teacher_test[metric], "folder": str(teacher)}}  # fmt: skip


def run_study(preset: str, folder: Path, progress: bool = True, overrides: list[str] | None = None) -> Path:
    """Run every setting of the preset into ``folder``; write report.md and results.json."""
    from kdlab.studies.structural_report import write

    if preset not in PRESETS:
        raise ConfigError(
            f"Unknown structural study preset {preset!r}.{suggest(preset, PRESETS)} Valid: {', '.join(PRESETS)}."
        )
    scale = PRESETS[preset]
    ctx = StudyContext(folder, merge(BASE, {}), progress, list(overrides or []))
    results = [run_setting(ctx, scale, s) for s in _settings(scale)]
    write(folder, preset, asdict(scale), results, sum(ctx.used.values()), len(ctx.used))
    return folder
