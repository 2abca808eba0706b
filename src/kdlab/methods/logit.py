"""Logit methods: ``ce`` (labels only, the independent student), ``kd`` (Hinton et al. 2015) and the
soft-label control ``noisy_soft_labels`` (Ojha et al. 2023)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.data.distillation import resolve_temperature
from kdlab.losses import hashed_normal, kd, label_cross_entropy, noisy_soft_labels, soft_target_cross_entropy
from kdlab.losses.logits import EnsembleTemperature
from kdlab.methods.base import MethodContext, register_method


def _labels(student: ModelOutput, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
    return label_cross_entropy(student.logits, batch.y, batch.mix_perm, batch.mix_lambda, label_smoothing)


@dataclass
class CEParams:
    label_smoothing: float = 0.0


@register_method("ce", CEParams)
class CrossEntropy(nn.Module):
    """Cross-entropy with the labels only — no teacher (the independent student)."""

    needs_teacher = False
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: CEParams, context: MethodContext) -> None:
        super().__init__()
        self.params = params

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        return {"ce": _labels(student, batch, self.params.label_smoothing)}


@dataclass
class KDParams:
    """Hinton KD. ``alpha`` weighs the label cross-entropy and ``1 − alpha`` the distillation term;
    Stanton et al. use alpha = 0 and τ = 4. ``ensemble`` says where an ensemble is tempered."""

    temperature: float = 4.0
    alpha: float = 0.0
    ensemble: EnsembleTemperature = "after_mean"


@register_method("kd", KDParams)
class KnowledgeDistillation(nn.Module):
    """Hinton KD: τ²-scaled soft cross-entropy to the teacher, plus alpha × label cross-entropy.
    Examples from a data source with its own temperature (``data.extra[i].temperature``) use that τ."""

    needs_teacher = True
    source_temperature = True
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: KDParams, context: MethodContext) -> None:
        super().__init__()
        if params.temperature <= 0 or not 0.0 <= params.alpha <= 1.0:
            raise ConfigError(
                f"kd needs method.temperature > 0 and 0 ≤ method.alpha ≤ 1; "
                f"got temperature={params.temperature}, alpha={params.alpha}."
            )
        self.params = params
        # "before_mean" tempers every member, so it needs the members' logits, not the reduction
        ensemble = context.teacher is not None and context.teacher.size > 1
        self.needs_member_logits = params.ensemble == "before_mean" and ensemble

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        assert teacher is not None
        p = self.params
        target = teacher.member_logits if self.needs_member_logits else teacher.logits
        tau = resolve_temperature(batch.temperature, p.temperature)
        terms = {"kd": (1.0 - p.alpha) * kd(student.logits, target, tau, p.ensemble)}
        if p.alpha > 0:
            terms["ce"] = p.alpha * _labels(student, batch)
        return terms


@dataclass
class NoisySoftLabelParams:
    """Ojha et al. (2023, App. 11.2): σ = 0.2, T = 0.15."""

    noise_std: float = 0.2
    temperature: float = 0.15
    seed: int = 0


@register_method("noisy_soft_labels", NoisySoftLabelParams)
class NoisySoftLabels(nn.Module):
    """Soft-label control ("KL*"): cross-entropy to softmax((onehot(y) + N(0, σ²))/T), noise fixed per example
    — soft targets with no teacher behind them."""

    needs_teacher = False
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: NoisySoftLabelParams, context: MethodContext) -> None:
        super().__init__()
        if params.noise_std < 0 or params.temperature <= 0:
            raise ConfigError(
                "noisy_soft_labels needs method.noise_std ≥ 0 and method.temperature > 0; "
                f"got noise_std={params.noise_std}, temperature={params.temperature}."
            )
        self.params, self.num_classes = params, context.num_classes

    def targets(self, batch: Batch) -> torch.Tensor:
        p = self.params
        noise = p.noise_std * hashed_normal(batch.index, self.num_classes, p.seed)
        return noisy_soft_labels(batch.y.clamp_min(0), noise.to(batch.x.device, torch.float32), p.temperature)

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        q = self.targets(batch)
        if batch.mix_perm is not None and batch.mix_lambda is not None:
            q = batch.mix_lambda * q + (1.0 - batch.mix_lambda) * q[batch.mix_perm]
        labelled = batch.y >= 0
        if not bool(labelled.all()):
            if batch.mix_perm is not None:
                labelled &= batch.y[batch.mix_perm] >= 0
            q, logits = q[labelled], student.logits[labelled]
        else:
            logits = student.logits
        return {"ce": soft_target_cross_entropy(logits, q) if len(q) else student.logits.sum() * 0.0}
