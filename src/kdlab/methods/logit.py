"""Logit methods: ``ce`` (labels only), Hinton's ``kd`` and gnosis' variants of it (Stanton et al. 2021), and the
soft-label control ``noisy_soft_labels`` (Ojha et al. 2023).

``kd``, ``reverse_kd``, ``symmetric_kl``, ``brier``, ``hard_kd`` and ``anneal_kd`` differ only by their loss
function, so they share one implementation, :class:`LogitKD`: Hinton's convex objective
``ce_weight · CE(labels) + (1 − ce_weight) · L(student, teacher)``, with the ``ce_weight`` (the weight of the label
cross-entropy, as in every method) of gnosis' configs. An ensemble teacher enters through ``teacher.logits``, its
log-mean-softmax reduction (``kd`` can also temper each member first: ``ensemble: before_mean``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.outputs import ModelOutput
from kdlab.data.distillation import resolve_temperature
from kdlab.data.loader import image_extras
from kdlab.losses import (
    anneal_kd,
    brier,
    hard_kd,
    hashed_normal,
    kd,
    noisy_soft_labels,
    reverse_kd,
    soft_target_cross_entropy,
    symmetric_kl,
)
from kdlab.losses.logits import EnsembleTemperature, HardLabels
from kdlab.methods.base import MethodContext, add_method, register_method, require, with_labels

CLASSIFICATION = ("image_classification", "text_classification")  # the tasks whose models give class logits [B, c]
IMAGES = ("image_classification",)  # the tasks whose layers are image feature maps (feature and relational methods)
CONVEX: dict[str, str] = {
    "alpha": "ce_weight (the weight of the label cross-entropy, as in every method; the distillation term weighs "
    "1 − ce_weight): alpha=A becomes ce_weight=A."
}


@dataclass
class CEParams:
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        smoothing = self.label_smoothing
        require(0.0 <= smoothing < 1.0, f"method.label_smoothing must lie in [0, 1); got {smoothing}.")


@register_method("ce", CEParams, tasks=None)
class CrossEntropy(nn.Module):
    """The task's loss with the labels only — no teacher (the independent student; a teacher's own training)."""

    needs_teacher = False
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: CEParams, context: MethodContext) -> None:
        super().__init__()
        require(
            params.label_smoothing == 0 or context.label_smoothing,
            f"method.label_smoothing={params.label_smoothing}: this task's label loss takes no smoothing; use 0.",
        )
        self.params, self.label_loss = params, context.label_loss

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        return {"ce": self.label_loss(student, batch, self.params.label_smoothing)}


@dataclass
class ConvexParams:
    """What every method of Hinton's convex objective takes: the temperature τ and the label weight ``ce_weight``
    in [0, 1] (the distillation term weighs 1 − ``ce_weight``)."""

    RENAMED: ClassVar[dict[str, str]] = CONVEX
    temperature: float = 4.0
    ce_weight: float = 0.0

    def __post_init__(self) -> None:
        require(
            0.0 <= self.ce_weight <= 1.0,
            "method.ce_weight (the label weight; the distillation term weighs 1 − ce_weight) must lie in [0, 1]; "
            f"got {self.ce_weight}.",
        )


@dataclass
class KDParams(ConvexParams):
    """Hinton KD. Stanton et al. use τ = 4 and no label term (``ce_weight`` = 0); ``ensemble`` says where an
    ensemble is tempered (``after_mean``: the ensemble's mean probability; ``before_mean``: each member)."""

    ensemble: EnsembleTemperature = "after_mean"


@dataclass
class ReverseKDParams(ConvexParams):
    """Reverse cross-entropy; τ = 4 and no label term, as in gnosis' distillation config."""


@dataclass
class SymmetricKLParams(ConvexParams):
    """KL(t‖s) + KL(s‖t) at τ, no τ²; ``ce_weight`` 0.5 is gnosis' config default for this loss."""

    ce_weight: float = 0.5


@dataclass
class BrierParams(ConvexParams):
    """Squared probability gap, mean over classes and examples; ``ce_weight`` 0.5 as in gnosis' config."""

    ce_weight: float = 0.5


@dataclass
class HardKDParams(ConvexParams):
    """Teacher's hard labels (``argmax`` or a ``sample`` from σ(z_t/τ)), τ²-scaled; ``ce_weight`` 0.5 as in
    gnosis' config."""

    ce_weight: float = 0.5
    mode: HardLabels = "argmax"


@dataclass
class AnnealKDParams(ConvexParams):
    """β · hard + (1 − β) · soft, β (gnosis' symbol) falling linearly from ``beta_start`` to 0 over
    ``anneal_epochs`` (0 = the run's epochs); no label term and β₀ = 1 as in gnosis' config."""

    beta_start: float = 1.0
    anneal_epochs: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            0.0 <= self.beta_start <= 1.0 and self.anneal_epochs >= 0,
            "anneal_kd needs 0 ≤ method.beta_start ≤ 1 and method.anneal_epochs ≥ 0 (0 = the run's epochs); "
            f"got beta_start={self.beta_start}, anneal_epochs={self.anneal_epochs}.",
        )


Loss = Callable[["LogitKD", torch.Tensor, torch.Tensor, float | torch.Tensor], torch.Tensor]


class LogitKD(nn.Module):
    """``{term: (1 − ce_weight) · loss(student, teacher), "ce": ce_weight · labels}`` — the one implementation of
    ``kd`` and its variants; ``loss`` gets the method (for its parameters and epoch), the student's logits, the
    teacher's (or, for ``kd`` with ``ensemble: before_mean``, the members') and the temperature (per example for
    data sources with their own τ, when the method distils at per-source temperatures)."""

    needs_teacher = True
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: object, context: MethodContext, *, term: str, loss: Loss, per_source: bool) -> None:
        super().__init__()
        self.params, self.term, self.loss, self.per_source = params, term, loss, per_source
        self.label_loss = context.label_loss
        self.epoch, self.epochs = 0, context.epochs
        # "before_mean" tempers every member, so it needs the members' logits, not the reduction
        ensemble = context.teacher is not None and getattr(context.teacher, "size", 1) > 1
        self.needs_member_logits = getattr(params, "ensemble", "after_mean") == "before_mean" and ensemble

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.epoch = epoch

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        assert teacher is not None
        p = self.params
        target = teacher.member_logits if self.needs_member_logits else teacher.logits
        tau = resolve_temperature(image_extras(batch).temperature, p.temperature) if self.per_source else p.temperature
        terms = {self.term: (1.0 - p.ce_weight) * self.loss(self, student.logits, target, tau)}
        return with_labels(terms, p.ce_weight, self.label_loss, student, batch)


def anneal_beta(method: LogitKD) -> float:
    """anneal_kd's β at the method's epoch: gnosis steps β −= β₀/T once per epoch; here in closed form in the
    epoch, so a resume lands on the same β."""
    p = method.params
    return p.beta_start * max(0.0, 1.0 - method.epoch / max(p.anneal_epochs or method.epochs, 1))


def _anneal(method: LogitKD, student: torch.Tensor, teacher: torch.Tensor, tau: float | torch.Tensor) -> torch.Tensor:
    return anneal_kd(student, teacher, anneal_beta(method), tau)


LOGIT_METHODS: list[tuple[str, type, Loss, str, bool]] = [
    ("kd", KDParams, lambda m, s, t, tau: kd(s, t, tau, m.params.ensemble),
     "Hinton KD: τ²-scaled soft cross-entropy to the teacher, plus ce_weight × the labels; examples of a data source "
     "with its own temperature (data.extra[i].temperature) use that τ.", True),
    ("reverse_kd", ReverseKDParams, lambda m, s, t, tau: reverse_kd(s, t, tau),
     "Reverse KD: τ² · cross-entropy of the student's tempered distribution against the teacher's (gnosis).", False),
    ("symmetric_kl", SymmetricKLParams, lambda m, s, t, tau: symmetric_kl(s, t, tau),
     "Symmetrised KL between tempered teacher and student (gnosis), plus ce_weight × the labels.", False),
    ("brier", BrierParams, lambda m, s, t, tau: brier(s, t, tau),
     "Brier distance between tempered teacher and student probabilities (gnosis), plus ce_weight × the labels.",
     False),
    ("hard_kd", HardKDParams, lambda m, s, t, tau: hard_kd(s, t, tau, m.params.mode),
     "Cross-entropy with the teacher's argmax (or sampled) labels (gnosis), plus ce_weight × the labels.", False),
    ("anneal_kd", AnnealKDParams, _anneal,
     "Convex anneal from teacher hard labels to Hinton soft targets over the run (gnosis).", False),
]  # fmt: skip


def _builder(term: str, loss: Loss, per_source: bool) -> Callable[[object, MethodContext], LogitKD]:
    return lambda params, context: LogitKD(params, context, term=term, loss=loss, per_source=per_source)


for _name, _params, _loss, _summary, _per_source in LOGIT_METHODS:
    add_method(
        _name,
        _params,
        _builder(_name, _loss, _per_source),
        tasks=CLASSIFICATION,
        needs_teacher=True,
        summary=_summary,
        source_temperature=_per_source,
    )


@dataclass
class NoisySoftLabelParams:
    """Ojha et al. (2023, App. 11.2): σ = 0.2, T = 0.15."""

    noise_std: float = 0.2
    temperature: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.noise_std >= 0, f"noisy_soft_labels needs method.noise_std ≥ 0; got {self.noise_std}.")


@register_method("noisy_soft_labels", NoisySoftLabelParams, tasks=CLASSIFICATION)
class NoisySoftLabels(nn.Module):
    """Soft-label control ("KL*"): cross-entropy to softmax((onehot(y) + N(0, σ²))/T), noise fixed per example
    — soft targets with no teacher behind them."""

    needs_teacher = False
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: NoisySoftLabelParams, context: MethodContext) -> None:
        super().__init__()
        self.params, self.num_classes = params, context.num_classes

    def targets(self, batch: Batch) -> torch.Tensor:
        p = self.params
        noise = p.noise_std * hashed_normal(batch.index, self.num_classes, p.seed)
        return noisy_soft_labels(batch.y.clamp_min(0), noise.to(batch.y.device, torch.float32), p.temperature)

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        q = self.targets(batch)
        mix = image_extras(batch)
        if mix.mix_perm is not None and mix.mix_lambda is not None:
            q = mix.mix_lambda * q + (1.0 - mix.mix_lambda) * q[mix.mix_perm]
        labelled = batch.y >= 0
        if not bool(labelled.all()):
            if mix.mix_perm is not None:
                labelled &= batch.y[mix.mix_perm] >= 0
            q, logits = q[labelled], student.logits[labelled]
        else:
            logits = student.logits
        return {"ce": soft_target_cross_entropy(logits, q) if len(q) else student.logits.sum() * 0.0}
