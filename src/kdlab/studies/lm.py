"""``kdlab study lm``: token-level distillation of a causal language model on the standard library's source — a
student trained on the next tokens alone, then forward KL, reverse KL, JSD(0.5), sequence-level KD and on-policy
GKD (λ = 0.5) — with next-token fidelity, held-out cross-entropy and tokens per second (Agarwal et al. 2024).

The teacher is a GPT-2-style model trained from scratch on the corpus (no pretrained causal LM can be had offline),
deeper and wider than the student, and trained longer, so that it is clearly better than the student can be alone;
the report states that gap. Every condition trains the same student architecture for the same number of steps on
the same prompt/completion split of the sequences (the first ``prompt_length`` tokens of each are its prompt; the
loss is on the rest, so supervised, sequence-level and on-policy conditions all learn continuations of the same
prompts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kdlab.core.errors import ConfigError, suggest
from kdlab.studies.runner import StudyContext, merge


@dataclass(frozen=True)
class LMScale:
    seeds: tuple[int, ...] = (0, 1, 2)
    vocab_size: int = 1024
    max_length: int = 128
    prompt_length: int = 64
    teacher_train: int | None = None  # sequences (None: the whole training split)
    teacher_layers: int = 4
    teacher_width: int = 128
    teacher_epochs: int = 3
    teacher_batch: int = 32
    student_layers: int = 2
    student_width: int = 64
    student_train: int = 4800  # sequences; × epochs / batch = the steps of every condition (900)
    student_epochs: int = 3
    student_batch: int = 16
    test_size: int = 256
    top_k: tuple[int, ...] = (8, 32, 128)  # cached forward KL at these k, against the full-vocabulary loss
    other_vocab_size: int = 512  # the student tokenizer of the cross-tokenizer pair (the teacher keeps vocab_size)


PRESETS = {
    "quick": LMScale(),
    "smoke": LMScale(
        seeds=(0,), vocab_size=512, max_length=32, prompt_length=16, teacher_train=96, teacher_layers=2,
        teacher_width=32, teacher_epochs=1, student_layers=1, student_width=16, student_train=32, student_epochs=1,
        student_batch=8, test_size=16, top_k=(8,), other_vocab_size=300,
    ),
}  # fmt: skip

BASE: dict[str, Any] = {"device": "cpu"}
TEACHER_OPTIM = {"name": "adamw", "lr": 3e-3, "weight_decay": 0.01, "schedule": "cosine", "warmup_epochs": 0.05}
STUDENT_OPTIM = {"name": "adamw", "lr": 3e-3, "weight_decay": 0.0, "schedule": "cosine", "warmup_epochs": 0.05}
NO_DROPOUT = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
# (label, method): the same steps, data and optimiser for each; GKD's defaults where the paper gives them
METHODS: list[tuple[str, dict[str, Any]]] = [
    ("CE only (next tokens)", {"name": "ce"}),
    ("forward KL (supervised)", {"name": "lm_kd", "divergence": "forward_kl"}),
    ("reverse KL (supervised)", {"name": "lm_kd", "divergence": "reverse_kl"}),
    ("JSD(0.5) (supervised)", {"name": "lm_kd", "divergence": "jsd", "beta": 0.5}),
    ("sequence-level KD (teacher's samples, forward KL)", {"name": "lm_kd", "mode": "sequence"}),
    ("on-policy GKD (λ = 0.5, JSD(0.5))",
     {"name": "lm_kd", "mode": "on_policy", "lmbda": 0.5, "divergence": "jsd", "beta": 0.5}),
]  # fmt: skip


# the cross-tokenizer experiment: no prompts (every token trained and measured, so that CE per byte covers the same
# texts whatever the tokenizer), the student on the teacher's tokenizer or on a smaller BPE of the same corpus; ULD
# alone (a permutation-invariant loss: it cannot say which token is which) and as its paper trains, CE + ULD
# (ce_weight 0.5: half of each, CE + 1 · ULD up to scale)
SAME_CE, SAME_KD = "same tokenizer: CE only", "same tokenizer: forward KL"
OTHER_CE, ULD, HYBRID = (
    "other tokenizer: CE only",
    "other tokenizer: ULD",
    "other tokenizer: hybrid (forward KL on shared tokens + ULD)",
)
ULD_CE, HYBRID_CE = "other tokenizer: CE + ULD (Boizard et al.)", "other tokenizer: CE + hybrid"
CROSS: list[tuple[str, bool, dict[str, Any]]] = [  # (label, the student reads the other tokenizer, method)
    (SAME_CE, False, {"name": "ce"}),
    (SAME_KD, False, {"name": "lm_kd", "divergence": "forward_kl"}),
    (OTHER_CE, True, {"name": "ce"}),
    (ULD, True, {"name": "lm_kd", "divergence": "uld"}),
    (HYBRID, True, {"name": "lm_kd", "divergence": "hybrid"}),
    (ULD_CE, True, {"name": "lm_kd", "divergence": "uld", "ce_weight": 0.5}),
    (HYBRID_CE, True, {"name": "lm_kd", "divergence": "hybrid", "ce_weight": 0.5}),
]


def slug(label: str) -> str:
    cut = label.split("(")[0] if not label.startswith(("forward", "reverse", "JSD")) else label
    text = "".join(c if c.isalnum() else "-" for c in cut.lower())
    while "--" in text:
        text = text.replace("--", "-")
    return text.strip("-")


def data(scale: LMScale, train: int | None, prompts: bool) -> dict[str, Any]:
    out = {"name": "stdlib", "vocab_size": scale.vocab_size, "max_length": scale.max_length,
           "batch_size": scale.student_batch, "eval_batch_size": 64, "test_size": scale.test_size}  # fmt: skip
    if train is not None:
        out["train_size"] = train
    if prompts:
        out["prompt_length"] = scale.prompt_length
    return out


def gpt2(layers: int, width: int, positions: int) -> dict[str, Any]:
    return {"name": "hf", "config": "gpt2", "n_layer": layers, "n_embd": width, "n_head": max(width // 32, 1),
            "n_positions": positions, **NO_DROPOUT}  # fmt: skip


def run_study(preset: str, folder: Path, progress: bool = True, overrides: list[str] | None = None) -> Path:
    """Train the teacher, run every condition for every seed into ``folder``; write report.md and results.json."""
    from kdlab.studies.lm_report import write

    if preset not in PRESETS:
        raise ConfigError(f"Unknown lm study preset {preset!r}.{suggest(preset, PRESETS)} Valid: {', '.join(PRESETS)}.")
    scale = PRESETS[preset]
    ctx = StudyContext(folder, merge(BASE, {}), progress, list(overrides or []))
    teacher_data = {**data(scale, scale.teacher_train, prompts=False), "batch_size": scale.teacher_batch}
    (teacher,) = ctx.teachers("gpt2", {
        "data": teacher_data, "student": gpt2(scale.teacher_layers, scale.teacher_width, scale.max_length),
        "epochs": scale.teacher_epochs, "optim": TEACHER_OPTIM,
    }, [0])  # fmt: skip
    student = gpt2(scale.student_layers, scale.student_width, scale.max_length)
    common = {"student": student, "epochs": scale.student_epochs, "seeds": list(scale.seeds), "optim": STUDENT_OPTIM,
              "teacher": str(teacher)}  # fmt: skip
    # every condition is a distill job, so that the student alone (ce) is judged against the same teacher
    prompted = {**common, "data": data(scale, scale.student_train, prompts=True)}
    rows = [{"label": label, "method": method, "runs": ctx.distill("lm", slug(label), {**prompted, "method": method})[
        "main"]} for label, method in METHODS]  # fmt: skip
    top_k = [{"label": "full vocabulary (online)", "k": None, "runs": rows[1]["runs"]}]
    for k in scale.top_k:
        settings = {**prompted, "method": METHODS[1][1], "cache": {"top_k": k}}
        top_k.append({"label": f"top-{k} cache (bucket tail)", "k": k,
                      "runs": ctx.distill("top_k", f"k{k}", settings)["main"]})  # fmt: skip
    cross = []
    for label, other, method in CROSS:
        settings = {**common, "method": method, "data": data(scale, scale.student_train, prompts=False)}
        if other:  # the student on a smaller BPE of the same corpus: the teacher reads with its own
            settings["data"]["vocab_size"] = scale.other_vocab_size
            settings["student"] = {**student, "tokenizer": "data"}
        cross.append({"label": label, "method": method, "runs": ctx.distill("cross", slug(label), settings)["main"]})
    parts = {"methods": rows, "top_k": top_k, "cross": cross}
    write(folder, preset, asdict(scale), parts, sum(ctx.used.values()), len(ctx.used))
    return folder
