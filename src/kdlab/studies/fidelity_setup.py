"""What the fidelity experiments share: the budget of a preset and the teachers and runs several reuse."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdlab.studies.runner import StudyContext


@dataclass(frozen=True)
class Scale:
    """The budget of a preset. ``train_size`` images (stratified subset) are the distillation data."""

    train_size: int | None = 10_000
    test_size: int | None = 5_000
    epochs: int = 10
    teacher_epochs: int = 15
    seeds: tuple[int, ...] = (0, 1, 2)
    ensemble: tuple[int, ...] = (1, 3, 5)
    lambdas: tuple[float, ...] = (0.0, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0)
    easy_labels: int = 200
    easy_teacher_epochs: int = 100
    long_factor: int = 3
    policies: tuple[str, ...] = ("baseline", "combined", "mixup", "noise")  # plus "none" = the m = 1 runs
    width: int = 8  # of the self-distillation CNN (teacher = student architecture)
    ood_images: int = 4000  # MNIST digits added as out-of-distribution distillation data (0: no ood condition)

    def net(self, norm: str = "batch") -> dict[str, Any]:
        return {"name": "cnn", "width": self.width, "norm": norm}


PRESETS = {
    "smoke": Scale(
        train_size=400,
        test_size=200,
        epochs=1,
        teacher_epochs=1,
        seeds=(0, 1),
        ensemble=(1, 2),
        lambdas=(0.0, 1.0),
        easy_labels=50,
        easy_teacher_epochs=2,
        long_factor=2,
        ood_images=100,
    ),
    "quick": Scale(),
    "full": Scale(train_size=None, test_size=None, epochs=30, teacher_epochs=30, seeds=(0, 1, 2, 3, 4), width=16),
}


def base_config(scale: Scale) -> dict[str, Any]:
    return {
        "data": {"name": "fashion_mnist", "train_size": scale.train_size, "test_size": scale.test_size},
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        "method": {"name": "kd", "temperature": 4.0, "ce_weight": 0.0},
        "epochs": scale.epochs,
        "eval_every": scale.epochs,
        "seeds": list(scale.seeds),
        "independent": False,
    }


def self_teachers(ctx: StudyContext, scale: Scale) -> list[Path]:
    """The self-distillation teachers, one per seed 0..max(m) − 1 (trained once, shared by experiments)."""
    settings = {"student": scale.net(), "epochs": scale.teacher_epochs, "eval_every": scale.teacher_epochs}
    return ctx.teachers("cnn", {**settings, "optim": {"lr": 0.1}}, range(max(scale.ensemble)))


def layernorm_teacher(ctx: StudyContext, scale: Scale) -> Path:
    """LayerNorm teacher: identical weights give identical functions (no running statistics)."""
    settings = {"student": scale.net("layer"), "epochs": scale.teacher_epochs, "eval_every": scale.teacher_epochs}
    return ctx.teachers("cnn_layernorm", {**settings, "optim": {"lr": 0.1}}, [0])[0]


def single_teacher_runs(ctx: StudyContext, scale: Scale) -> dict[str, list[dict[str, Any]]]:
    """The m = 1 condition (teacher seed 0, with the control from seed 1): the shared reference run of the
    ensemble, temperature (τ = 4) and augmentation ("none") experiments."""
    paths = self_teachers(ctx, scale)
    settings = {"teacher": [str(paths[0])], "student": scale.net(), "control_teacher": str(paths[1])}
    return ctx.distill("ensemble", "m1", settings)


def sgd_layernorm_runs(ctx: StudyContext, scale: Scale) -> list[dict[str, Any]]:
    """LayerNorm self-distillation with SGD from a random init: optimisation's SGD run and λ = 0."""
    settings = {"teacher": str(layernorm_teacher(ctx, scale)), "student": scale.net("layer")}
    return ctx.distill("optimization", "sgd", {**settings, "optim": {"weight_decay": 0.0}})["main"]
