"""The logit family beyond Hinton KD: gnosis' variants (Stanton et al. 2021, papers.md §1.2), DKD and DIST.

The gnosis variants use Hinton's objective ``α · CE(labels) + (1 − α) · L``, with the default α of gnosis'
configs (papers.md §1.2 "default α in config"); DKD and DIST add ``ce_weight · CE`` as their papers do.
An ensemble teacher enters through ``teacher.logits``, its log-mean-softmax reduction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.losses.decoupled import dist, dkd
from kdlab.losses.logits import HardLabels, anneal_kd, brier, hard_kd, label_cross_entropy, reverse_kd, symmetric_kl
from kdlab.methods.base import MethodContext, register_method


def _check(name: str, temperature: float, alpha: float) -> None:
    if temperature <= 0 or not 0.0 <= alpha <= 1.0:
        raise ConfigError(
            f"{name} needs method.temperature > 0 and 0 ≤ method.alpha ≤ 1 (the label weight); "
            f"got temperature={temperature}, alpha={alpha}."
        )


def _hinton(name: str, loss: torch.Tensor, alpha: float, student: ModelOutput, batch: Batch) -> dict[str, torch.Tensor]:
    """``{name: (1 − α) · loss, "ce": α · CE}`` (the label term only when α > 0, as in ``kd``)."""
    terms = {name: (1.0 - alpha) * loss}
    if alpha > 0:
        terms["ce"] = alpha * label_cross_entropy(student.logits, batch.y, batch.mix_perm, batch.mix_lambda)
    return terms


@dataclass
class ReverseKDParams:
    """Reverse cross-entropy; τ = 4 and α = 0 as in gnosis' distillation config."""

    temperature: float = 4.0
    alpha: float = 0.0


@register_method("reverse_kd", ReverseKDParams)
class ReverseKD(nn.Module):
    """Reverse KD: τ² · cross-entropy of the student's tempered distribution against the teacher's (gnosis)."""

    needs_teacher = True
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: ReverseKDParams, context: MethodContext) -> None:
        super().__init__()
        _check("reverse_kd", params.temperature, params.alpha)
        self.params = params

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        assert teacher is not None
        p = self.params
        loss = reverse_kd(student.logits, teacher.logits, p.temperature)
        return _hinton("reverse_kd", loss, p.alpha, student, batch)


@dataclass
class SymmetricKLParams:
    """KL(t‖s) + KL(s‖t) at τ, no τ²; α = 0.5 is gnosis' config default for this loss (papers.md §1.2)."""

    temperature: float = 4.0
    alpha: float = 0.5


@register_method("symmetric_kl", SymmetricKLParams)
class SymmetricKL(nn.Module):
    """Symmetrised KL between tempered teacher and student (gnosis), plus alpha × label cross-entropy."""

    needs_teacher = True
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: SymmetricKLParams, context: MethodContext) -> None:
        super().__init__()
        _check("symmetric_kl", params.temperature, params.alpha)
        self.params = params

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        assert teacher is not None
        p = self.params
        loss = symmetric_kl(student.logits, teacher.logits, p.temperature)
        return _hinton("symmetric_kl", loss, p.alpha, student, batch)


@dataclass
class BrierParams:
    """Squared probability gap, mean over classes and examples; α = 0.5 as in gnosis' config (papers.md §1.2)."""

    temperature: float = 4.0
    alpha: float = 0.5


@register_method("brier", BrierParams)
class Brier(nn.Module):
    """Brier distance between tempered teacher and student probabilities (gnosis), plus alpha × label CE."""

    needs_teacher = True
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: BrierParams, context: MethodContext) -> None:
        super().__init__()
        _check("brier", params.temperature, params.alpha)
        self.params = params

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        assert teacher is not None
        p = self.params
        return _hinton("brier", brier(student.logits, teacher.logits, p.temperature), p.alpha, student, batch)


@dataclass
class HardKDParams:
    """Teacher's hard labels (``argmax`` or a ``sample`` from σ(z_t/τ)), τ²-scaled; α = 0.5 as in gnosis' config."""

    temperature: float = 4.0
    alpha: float = 0.5
    mode: HardLabels = "argmax"


@register_method("hard_kd", HardKDParams)
class HardKD(nn.Module):
    """Cross-entropy with the teacher's argmax (or sampled) labels (gnosis), plus alpha × label CE."""

    needs_teacher = True
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: HardKDParams, context: MethodContext) -> None:
        super().__init__()
        _check("hard_kd", params.temperature, params.alpha)
        self.params = params

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        assert teacher is not None
        p = self.params
        loss = hard_kd(student.logits, teacher.logits, p.temperature, p.mode)
        return _hinton("hard_kd", loss, p.alpha, student, batch)


@dataclass
class AnnealKDParams:
    """β · hard + (1 − β) · soft, β falling linearly from ``beta_start`` to 0 over ``anneal_epochs``
    (0 = the run's epochs); α = 0, β₀ = 1 as in gnosis' config (papers.md §1.2)."""

    temperature: float = 4.0
    alpha: float = 0.0
    beta_start: float = 1.0
    anneal_epochs: int = 0


@register_method("anneal_kd", AnnealKDParams)
class AnnealKD(nn.Module):
    """Convex anneal from teacher hard labels to Hinton soft targets over the run (gnosis)."""

    needs_teacher = True
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: AnnealKDParams, context: MethodContext) -> None:
        super().__init__()
        _check("anneal_kd", params.temperature, params.alpha)
        if not 0.0 <= params.beta_start <= 1.0 or params.anneal_epochs < 0:
            raise ConfigError(
                f"anneal_kd needs 0 ≤ method.beta_start ≤ 1 and method.anneal_epochs ≥ 0 (0 = the run's epochs); "
                f"got beta_start={params.beta_start}, anneal_epochs={params.anneal_epochs}."
            )
        self.params = params
        self.anneal_epochs = params.anneal_epochs or context.epochs
        self.beta = params.beta_start

    def start_epoch(self, epoch: int, epochs: int) -> None:
        # closed form in the epoch (gnosis steps β −= β₀/T once per epoch), so a resume lands on the same β
        self.beta = self.params.beta_start * max(0.0, 1.0 - epoch / max(self.anneal_epochs, 1))

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        assert teacher is not None
        p = self.params
        loss = anneal_kd(student.logits, teacher.logits, self.beta, p.temperature)
        return _hinton("anneal_kd", loss, p.alpha, student, batch)


@dataclass
class DKDParams:
    """Zhao et al. 2022, CIFAR-100 setting (mdistiller configs): α = 1 (TCKD), β = 8 (NCKD), τ = 4, CE weight 1,
    KD weight warmed up linearly over the first 20 epochs."""

    ce_weight: float = 1.0
    alpha: float = 1.0
    beta: float = 8.0
    temperature: float = 4.0
    warmup_epochs: int = 20


def _target(y: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """The ground-truth class; the teacher's argmax (on the image the student saw) stands in where y = −1."""
    return torch.where(y >= 0, y, teacher_logits.argmax(-1))


@register_method("dkd", DKDParams)
class DecoupledKD(nn.Module):
    """Decoupled KD (Zhao et al. 2022): target-class and non-target-class KD weighted separately, plus CE."""

    needs_teacher = True
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: DKDParams, context: MethodContext) -> None:
        super().__init__()
        if params.temperature <= 0 or params.warmup_epochs < 0:
            raise ConfigError(
                "dkd needs method.temperature > 0 and method.warmup_epochs ≥ 0; "
                f"got temperature={params.temperature}, warmup_epochs={params.warmup_epochs}."
            )
        self.params = params
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

        kd_term = loss(batch.y)
        if batch.mix_perm is not None and batch.mix_lambda is not None:
            # mixed images have two targets: weigh DKD for each like the label loss does
            kd_term = batch.mix_lambda * kd_term + (1.0 - batch.mix_lambda) * loss(batch.y[batch.mix_perm])
        terms = {"dkd": self.kd_weight * kd_term}
        if p.ce_weight > 0:
            terms["ce"] = p.ce_weight * label_cross_entropy(student.logits, batch.y, batch.mix_perm, batch.mix_lambda)
        return terms


@dataclass
class DISTParams:
    """Huang et al. 2022: β = γ = 1, CE weight 1; τ = 4, the CIFAR-100 temperature (ImageNet uses τ = 1)."""

    ce_weight: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    temperature: float = 4.0


@register_method("dist", DISTParams)
class DIST(nn.Module):
    """DIST (Huang et al. 2022): match the teacher's inter- and intra-class Pearson relations, plus CE."""

    needs_teacher = True
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: DISTParams, context: MethodContext) -> None:
        super().__init__()
        if params.temperature <= 0:
            raise ConfigError(f"dist needs method.temperature > 0; got {params.temperature}.")
        self.params = params

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        assert teacher is not None
        p = self.params
        terms = {"dist": dist(student.logits, teacher.logits, p.beta, p.gamma, p.temperature)}
        if p.ce_weight > 0:
            terms["ce"] = p.ce_weight * label_cross_entropy(student.logits, batch.y, batch.mix_perm, batch.mix_lambda)
        return terms
