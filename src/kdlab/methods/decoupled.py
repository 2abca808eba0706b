"""The logit methods that take the teacher's distribution apart: DKD (Zhao et al. 2022) and DIST (Huang et al. 2022).

Both add ``ce_weight`` × the label cross-entropy to their distillation term, as their papers do; ``alpha``/``beta``
(DKD) and ``beta``/``gamma`` (DIST) keep their papers' meanings. An ensemble teacher enters through
``teacher.logits``, its log-mean-softmax reduction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.outputs import ModelOutput
from kdlab.data.loader import image_extras
from kdlab.losses import dist, dkd
from kdlab.methods.base import MethodContext, register_method, require, with_labels
from kdlab.methods.logit import CLASSIFICATION


@dataclass
class DKDParams:
    """Zhao et al. 2022, CIFAR-100 setting (mdistiller configs): α = 1 (TCKD), β = 8 (NCKD), τ = 4, CE weight 1,
    KD weight warmed up linearly over the first 20 epochs."""

    ce_weight: float = 1.0
    alpha: float = 1.0
    beta: float = 8.0
    temperature: float = 4.0
    warmup_epochs: int = 20

    def __post_init__(self) -> None:
        require(self.warmup_epochs >= 0, f"dkd needs method.warmup_epochs ≥ 0; got {self.warmup_epochs}.")


def _target(y: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """The ground-truth class; the teacher's argmax (on the image the student saw) stands in where y = −1."""
    return torch.where(y >= 0, y, teacher_logits.argmax(-1))


@register_method("dkd", DKDParams, tasks=CLASSIFICATION)
class DecoupledKD(nn.Module):
    """Decoupled KD (Zhao et al. 2022): target-class and non-target-class KD weighted separately, plus CE."""

    needs_teacher = True
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: DKDParams, context: MethodContext) -> None:
        super().__init__()
        self.params, self.label_loss = params, context.label_loss
        self.start_epoch(0, context.epochs)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        # mdistiller: min(epoch / warmup, 1) with 1-based epochs, i.e. 1/20 in the first epoch, 1 from the 20th on
        warmup = self.params.warmup_epochs
        self.kd_weight = min((epoch + 1) / warmup, 1.0) if warmup > 0 else 1.0

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        assert teacher is not None
        p = self.params

        def loss(y: torch.Tensor) -> torch.Tensor:
            target = _target(y, teacher.logits)
            return dkd(student.logits, teacher.logits, target, p.alpha, p.beta, p.temperature)

        kd_term, mix = loss(batch.y), image_extras(batch)
        if mix.mix_perm is not None and mix.mix_lambda is not None:
            # mixed images have two targets: weigh DKD for each like the label loss does
            kd_term = mix.mix_lambda * kd_term + (1.0 - mix.mix_lambda) * loss(batch.y[mix.mix_perm])
        terms = {"dkd": self.kd_weight * kd_term}
        return with_labels(terms, p.ce_weight, self.label_loss, student, batch)


@dataclass
class DISTParams:
    """Huang et al. 2022: β = γ = 1, CE weight 1; τ = 4, the CIFAR-100 temperature (ImageNet uses τ = 1)."""

    ce_weight: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    temperature: float = 4.0


@register_method("dist", DISTParams, tasks=CLASSIFICATION)
class DIST(nn.Module):
    """DIST (Huang et al. 2022): match the teacher's inter- and intra-class Pearson relations, plus CE."""

    needs_teacher = True
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: DISTParams, context: MethodContext) -> None:
        super().__init__()
        self.params, self.label_loss = params, context.label_loss

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        assert teacher is not None
        p = self.params
        terms = {"dist": dist(student.logits, teacher.logits, p.beta, p.gamma, p.temperature)}
        return with_labels(terms, p.ce_weight, self.label_loss, student, batch)
