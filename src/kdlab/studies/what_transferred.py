"""``kdlab analyze --preset mnist-domains``: train the paper's MNIST setting small and analyse it.

Teacher: a CNN trained on MNIST in three domains (orig, colour background, texture background). Students: the
same CNN trained on the original domain only — independent (labels), KD, Hint (FitNets), CRD and the soft-label
control (noisy smoothed one-hot labels, no teacher) — three seeds each, so that the independent students give a
control distribution over their pairs (the paper's protocol, §5.1, and the what-transferred analyses of §4 on the
same models).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdlab.studies.runner import StudyContext

NET = {"name": "cnn", "width": 16}
PRESETS = ("mnist-domains",)


def base_config(seeds: list[int]) -> dict[str, Any]:
    return {
        "data": {"name": "domains", "base": "mnist", "domains": "orig", "val_fraction": 0.1},
        "student": NET,
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        "epochs": 15,
        "eval_every": 15,
        "seeds": seeds,
        "independent": False,
    }


def train_preset(out: Path, progress: bool = True) -> list[Path]:
    """Train (or reuse) the teacher and every student; returns the run folders to analyse."""
    ctx = StudyContext(out, base_config([0, 1, 2]), progress)
    teacher = ctx.teachers(
        "teacher_all_domains", {"data": {"domains": "orig,color,texture"}, "optim": {"lr": 0.1}}, [0]
    )[0]
    folders = []
    methods = {
        "ind": {"method": {"name": "ce"}},
        "kd": {"method": {"name": "kd", "temperature": 4.0, "ce_weight": 0.5}},
        "hint": {"method": {"name": "fitnets"}},
        "crd": {"method": {"name": "crd", "negatives": 1024}},
        "soft_labels": {"method": {"name": "noisy_soft_labels"}},  # the paper's soft-label control (KL*)
    }
    for name, settings in methods.items():
        ctx.distill("students", name, {"teacher": str(teacher), **settings})
        folders.append(out / "runs" / "students" / name)
    return folders
