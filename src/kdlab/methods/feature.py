"""Feature methods: ``fitnets`` (Romero et al. 2015), ``at`` (Zagoruyko & Komodakis 2017), ``sad`` (Hou et al. 2019);
``at`` and ``sad`` share one implementation (:class:`MapDistillation`).

Each pairs the i-th student layer with the i-th teacher layer and adds ``ce_weight`` × the label
cross-entropy (term ``"ce"``) to ``weight`` × the method's loss summed over the pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.losses.features import attention_transfer, hint, resize_map, self_attention_distillation
from kdlab.methods.base import MethodContext, add_method, register_method, require, with_labels
from kdlab.methods.layers import Default, feature_shapes, pick_layers, require_pairs, require_rank
from kdlab.methods.logit import IMAGES

MAPS = "[C, H, W] feature maps (a 4-D [B, C, H, W] batch)"


def _layers(
    name: str,
    student_layers: tuple[str, ...],
    teacher_layers: tuple[str, ...],
    default: Default,
    context: MethodContext,
) -> tuple[tuple[str, ...], tuple[str, ...], list[torch.Size], list[torch.Size]]:
    """Resolved student and teacher layers, checked to pair one to one, and their per-example shapes."""
    teacher = context.teacher_model(name)
    if len(context.input_shape) < 2:
        raise ConfigError(
            f"Method {name!r} sizes itself from layer shapes, so MethodContext.input_shape must give one example's "
            f"shape, e.g. (C, H, W); got {context.input_shape!r}."
        )
    student = pick_layers(context.student, student_layers, default, owner="student", method=name)
    picked = pick_layers(teacher, teacher_layers, default, owner="teacher", method=name)
    require_pairs(name, student, picked)
    s_shapes = feature_shapes(context.student, student, context.input_shape, owner="student")
    t_shapes = feature_shapes(teacher, picked, context.input_shape, owner="teacher")
    return student, picked, [s_shapes[n] for n in student], [t_shapes[n] for n in picked]


def _terms(
    method: nn.Module,
    pair_loss: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor],
    student: ModelOutput,
    teacher: ModelOutput | None,
    batch: Batch,
) -> dict[str, torch.Tensor]:
    """``{term: weight · Σ_i pair_loss(i, s_i, t_i), "ce": ce_weight · label CE}`` over the paired layers."""
    assert teacher is not None
    p = method.params
    pairs = enumerate(zip(method.student_layers, method.teacher_layers, strict=True))
    losses = [pair_loss(i, student.features[s], teacher.features[t]) for i, (s, t) in pairs]
    terms = {method.term: p.weight * torch.stack(losses).sum()}
    return with_labels(terms, p.ce_weight, method.label_loss, student, batch)


@dataclass
class FitNetsParams:
    """FitNets hints. β = 100 on the mean squared error and γ = 1 follow RepDistiller (``-r 1 -b 100``) and
    mdistiller (``FITNET.LOSS.FEAT_WEIGHT 100``); the default layer is the middle stage (Ojha et al.: after
    the 2nd of 3–4 residual stages). ``regressor``: ``bn_relu`` = 1×1 conv (Linear for vectors) +
    BatchNorm + ReLU as RepDistiller's ``ConvReg``; ``linear`` = the conv / Linear alone (for layers whose
    teacher outputs can be negative)."""

    weight: float = 100.0
    ce_weight: float = 1.0
    regressor: Literal["bn_relu", "linear"] = "bn_relu"
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()


def _regressor(student: torch.Size, teacher: torch.Size, kind: str) -> nn.Module:
    maps = len(student) == 3
    project = nn.Conv2d(student[0], teacher[0], 1) if maps else nn.Linear(student[0], teacher[0])
    if kind == "linear":
        return nn.Sequential(project)
    norm = nn.BatchNorm2d(teacher[0]) if maps else nn.BatchNorm1d(teacher[0])
    return nn.Sequential(project, norm, nn.ReLU())


@register_method("fitnets", FitNetsParams, tasks=IMAGES)
class FitNets(nn.Module):
    """FitNets hints: MSE between a learned regressor of student features and the teacher's features."""

    needs_teacher = True
    term = "fitnets"

    def __init__(self, params: FitNetsParams, context: MethodContext) -> None:
        student, teacher, s_shapes, t_shapes = _layers(
            "fitnets", params.student_layers, params.teacher_layers, "middle_stage", context
        )
        super().__init__()
        self.params, self.student_layers, self.teacher_layers = params, student, teacher
        self.label_loss = context.label_loss
        for layer, shape in zip(student, s_shapes, strict=True):
            require_rank("fitnets", "student", layer, shape, {1, 3}, "[C, H, W] feature maps or [D] vectors")
        for s_layer, s_shape, t_layer, t_shape in zip(student, s_shapes, teacher, t_shapes, strict=True):
            needs = f"the rank of its paired student layer {s_layer!r} {tuple(s_shape)}"
            require_rank("fitnets", "teacher", t_layer, t_shape, {len(s_shape)}, needs)
        self.sizes = [tuple(t[1:]) for t in t_shapes]
        device = next(iter(context.student.parameters()), torch.empty(0)).device
        self.regressors = nn.ModuleList(
            _regressor(s, t, params.regressor) for s, t in zip(s_shapes, t_shapes, strict=True)
        ).to(device)

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        return _terms(self, self.pair_loss, student, teacher, batch)

    def pair_loss(self, index: int, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if student.dim() == 4:
            # resize before the 1×1 conv: both are linear per position, and pooling first is cheaper
            student = resize_map(student, self.sizes[index])
        return hint(self.regressors[index](student), teacher)


@dataclass
class ATParams:
    """Attention transfer. β = 1000 per layer pair with the mean form and p = 2 as RepDistiller (the AT
    authors' code uses β/2 = 500); γ = 1; default layers = every stage."""

    weight: float = 1000.0
    ce_weight: float = 1.0
    p: float = 2.0
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        require(self.p > 0, f"at needs method.p > 0; got {self.p}.")


def _require_maps(name: str, layers: tuple[str, ...], shapes: list[torch.Size], owner: str) -> None:
    for layer, shape in zip(layers, shapes, strict=True):
        require_rank(name, owner, layer, shape, {3}, MAPS)


@dataclass
class SADParams:
    """Self-attention distillation between teacher and student. The weight 1 is ours (our
    reconstruction of EKD uses 1 for this MSE form), not a value from Hou et al.; γ = 1; layers = every stage."""

    weight: float = 1.0
    ce_weight: float = 1.0
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()


class MapDistillation(nn.Module):
    """Attention transfer and SAD differ only by the loss on a pair of feature maps: one implementation, with
    ``term`` and ``loss(method, student_map, teacher_map)`` given when registered."""

    needs_teacher = True

    def __init__(self, params: ATParams | SADParams, context: MethodContext, *, term: str, loss: MapLoss) -> None:
        student, teacher, s_shapes, t_shapes = _layers(
            term, params.student_layers, params.teacher_layers, "stages", context
        )
        _require_maps(term, student, s_shapes, "student")
        _require_maps(term, teacher, t_shapes, "teacher")
        super().__init__()
        self.params, self.student_layers, self.teacher_layers = params, student, teacher
        self.term, self.loss, self.label_loss = term, loss, context.label_loss

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        return _terms(self, self.pair_loss, student, teacher, batch)

    def pair_loss(self, index: int, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return self.loss(self, student, teacher)


MapLoss = Callable[[MapDistillation, torch.Tensor, torch.Tensor], torch.Tensor]
MAP_METHODS: list[tuple[str, type, MapLoss, str]] = [
    ("at", ATParams, lambda m, s, t: attention_transfer(s, t, m.params.p),
     "Attention transfer: match the normalised spatial maps mean_c |f|^p of paired layers."),
    ("sad", SADParams, lambda m, s, t: self_attention_distillation(s, t),
     "Self-attention distillation (Hou et al.): MSE between spatial softmaxes of sum_c f² of paired layers."),
]  # fmt: skip


def _map_builder(term: str, loss: MapLoss) -> Callable[[object, MethodContext], MapDistillation]:
    return lambda params, context: MapDistillation(params, context, term=term, loss=loss)  # type: ignore[arg-type]


for _name, _params, _loss, _summary in MAP_METHODS:
    add_method(_name, _params, _map_builder(_name, _loss), tasks=IMAGES, needs_teacher=True, summary=_summary)
