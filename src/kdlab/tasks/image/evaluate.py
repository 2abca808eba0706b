"""What an image job measures: a student's accuracy, NLL, ECE and its fidelity to a teacher (agreement, KL, TV) on
the fixed splits and on the augmented views it was distilled on, and the figures of every depth of a
depth-switchable student."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kdlab.core.modes import eval_mode
from kdlab.metrics.fidelity import split_metrics
from kdlab.models.depth import DepthSwitch
from kdlab.tasks.image.depths import depth_figures
from kdlab.tasks.image.sources import Sources, TeacherPredictions
from kdlab.training.predict import model_predictor, predict_all, predict_source
from kdlab.training.teachers import Teacher


@dataclass
class Shared:
    """What the runs of one image job share: the data, a teacher and the teacher's predictions on the fixed splits
    (computed once)."""

    sources: Sources
    device: torch.device
    teacher: Teacher | None = None
    teacher_name: str | None = None
    predictions: TeacherPredictions | None = None
    teacher_test: dict[str, float] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)
            self.predictions = TeacherPredictions(self.teacher, self.sources, self.device)

    def teacher_logits(self, split: str) -> torch.Tensor | None:
        return None if self.predictions is None else self.predictions.table(split)

    def teacher_metrics(self) -> dict[str, float]:
        """The teacher's own test accuracy, NLL and ECE (computed once)."""
        if self.teacher_test is None:
            assert self.teacher is not None and self.sources.test is not None
            logits = self.teacher_logits("test")
            if logits is None:
                out, targets, _ = predict_all(
                    {"t": lambda b: self.teacher(b.x).logits}, self.sources.test.epoch(0), self.device
                )
                logits = out["t"]
            else:
                targets = torch.cat([b.y for b in self.sources.test.epoch(0)])
            self.teacher_test = split_metrics(logits, targets, None)
        return self.teacher_test


def evaluate(student: nn.Module, shared: Shared, split: str) -> dict[str, float]:
    """Student metrics on a fixed split, against the teacher when there is one."""
    source = shared.sources.split(split)
    assert source is not None
    table = shared.teacher_logits(split)
    predictors = {"s": model_predictor(student)}
    if shared.teacher is not None and table is None:
        predictors["t"] = lambda b: shared.teacher(b.x).logits
    with eval_mode(student):
        logits, targets, index = predict_source(predictors, source, shared.device)  # shared out under torchrun
    teacher_logits = logits.get("t", None if table is None else table[index])
    return split_metrics(logits["s"], targets, teacher_logits)


def evaluate_views(student: nn.Module, shared: Shared, seed: int) -> dict[str, float]:
    """Student vs teacher, both in eval mode, on the augmented training views of the first epoch — the
    distillation data actually used (Stanton et al.'s train agreement, measured after training)."""
    assert shared.teacher is not None
    predictors = {"s": model_predictor(student), "t": lambda b: shared.teacher(b.x).logits}
    with eval_mode(student):
        logits, targets, _ = predict_source(predictors, shared.sources.make_train(seed), shared.device)
    return split_metrics(logits["s"], targets, logits["t"])


def depths(student: DepthSwitch, shared: Shared) -> dict[str, dict[str, Any]]:
    """Figures for every depth (sub-nets' BatchNorm recalibrated on training images first)."""
    test, train = shared.sources.test, shared.sources.train_eval
    assert test is not None
    table = shared.teacher_logits("test")
    return depth_figures(
        student,
        lambda: test.epoch(0),
        shared.sources.info,
        shared.device,
        calibration=train.epoch(0) if train is not None else None,
        teacher_logits=(lambda index: table[index]) if table is not None else None,
    )
