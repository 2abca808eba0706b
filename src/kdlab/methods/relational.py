"""Relational methods: ``sp``, ``rkd``, ``pkt``, ``gkd`` and ``topology`` (FTD).

Each compares relations between the examples of a batch, so student and teacher layers may have any
sizes (no regressor, no trainable part). The i-th student layer pairs with the i-th teacher layer; the
terms are ``"ce"`` = ``ce_weight`` × label cross-entropy and the method's term = ``weight`` × its loss
(summed over the pairs for ``sp``, as Tung & Mori; averaged over them for the others, as graph_kd).
Losses and their formulas: :mod:`kdlab.losses.relations`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.outputs import ModelOutput
from kdlab.data.loader import image_extras
from kdlab.losses.relations import Edges, gkd_loss, pkt_loss, rkd_loss, sp_loss, topology_loss
from kdlab.methods.base import MethodContext, register_method, require, with_labels
from kdlab.methods.layers import Default, feature_shapes, pick_layers, require_pairs, require_rank
from kdlab.methods.logit import IMAGES
from kdlab.training.taps import resolve_modules

Layers = tuple[str, ...]


def gkd_default_layers(model: nn.Module, owner: str) -> Layers:
    """GKD's default: every stage but the last, then the embedding (``stage_names[:-1] + (embedding_name,)``)."""
    stages = tuple(getattr(model, "stage_names", ()))
    embedding = getattr(model, "embedding_name", None)
    if not embedding:
        return pick_layers(model, (), "embedding", owner=owner, method="gkd")  # raises the usual error
    return tuple(dict.fromkeys((*stages[:-1], embedding)))


class _Params(Protocol):
    weight: float
    ce_weight: float
    student_layers: Layers
    teacher_layers: Layers


LayerDefault = Default | Callable[[nn.Module, str], Layers]


def _layers(name: str, params: _Params, default: LayerDefault, context: MethodContext) -> tuple[Layers, Layers]:
    """The paired (student, teacher) layers: given, else the default; names (and shapes, when the context
    gives an input shape) checked."""
    teacher = context.teacher_model(name)
    picked = []
    for owner, model, given in (
        ("student", context.student, params.student_layers),
        ("teacher", teacher, params.teacher_layers),
    ):
        if given or isinstance(default, str):
            layers = pick_layers(model, given, default, owner=owner, method=name)  # type: ignore[arg-type]
        else:
            layers = default(model, owner)
        if context.input_shape:  # any rank ≥ 1 is flattened to a vector per example
            for layer, shape in feature_shapes(model, layers, context.input_shape, owner=owner).items():
                require_rank(name, owner, layer, shape, set(range(1, 9)), "at least a vector per example")
        else:
            resolve_modules(model, layers, owner=owner)
        picked.append(layers)
    require_pairs(name, picked[0], picked[1])
    return picked[0], picked[1]


def _setup(module: nn.Module, name: str, params: _Params, context: MethodContext, default: LayerDefault) -> None:
    module.params, module.label_loss = params, context.label_loss
    module.student_layers, module.teacher_layers = _layers(name, params, default, context)


PairLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _terms(
    module: nn.Module, loss: PairLoss, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
) -> dict[str, torch.Tensor]:
    """``{module.term: weight · (Σ or mean)_i loss(s_i, t_i), "ce": ce_weight · label CE}``."""
    assert teacher is not None
    p = module.params
    pairs = zip(module.student_layers, module.teacher_layers, strict=True)
    losses = torch.stack([loss(student.features[s], teacher.features[t]) for s, t in pairs])
    out = {module.term: p.weight * (losses.sum() if module.reduce == "sum" else losses.mean())}
    return with_labels(out, p.ce_weight, module.label_loss, student, batch)


@dataclass
class SPParams:
    """Similarity-preserving KD. β = 3000, γ = 1 (RepDistiller ``-r 1 -b 3000``); default layer = last stage
    (RepDistiller's ``feat[-2]``); several layer pairs are summed (Tung & Mori; RepDistiller)."""

    weight: float = 3000.0
    ce_weight: float = 1.0
    student_layers: Layers = ()
    teacher_layers: Layers = ()


@register_method("sp", SPParams, tasks=IMAGES)
class SimilarityPreserving(nn.Module):
    """Similarity-preserving KD (Tung & Mori 2019): match row-normalised batch Gram matrices."""

    needs_teacher = True
    term, reduce = "sp", "sum"

    def __init__(self, params: SPParams, context: MethodContext) -> None:
        super().__init__()
        _setup(self, "sp", params, context, "last_stage")

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        return _terms(self, sp_loss, student, teacher, batch)


@dataclass
class RKDParams:
    """Relational KD, distance + angle. Inner weights 25 and 50 (Park et al. 2019; RepDistiller ``RKDLoss``),
    outer ``weight`` 1 and γ = 1 (RepDistiller ``-r 1 -b 1``); default layer = the embedding."""

    weight: float = 1.0
    distance_weight: float = 25.0
    angle_weight: float = 50.0
    ce_weight: float = 1.0
    student_layers: Layers = ()
    teacher_layers: Layers = ()


@register_method("rkd", RKDParams, tasks=IMAGES)
class RelationalKD(nn.Module):
    """Relational KD (Park et al. 2019): match normalised pairwise distances and triplet angles."""

    needs_teacher = True
    term, reduce = "rkd", "mean"

    def __init__(self, params: RKDParams, context: MethodContext) -> None:
        super().__init__()
        _setup(self, "rkd", params, context, "embedding")

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        p = self.params

        def loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return rkd_loss(s, t, p.distance_weight, p.angle_weight)

        return _terms(self, loss, student, teacher, batch)


@dataclass
class PKTParams:
    """Probabilistic knowledge transfer. β = 30000 on the mean over the B² entries and γ = 1 (RepDistiller
    ``-r 1 -b 30000``; the paper's divergence is the sum, i.e. B² × this mean); default layer = embedding."""

    weight: float = 30000.0
    ce_weight: float = 1.0
    student_layers: Layers = ()
    teacher_layers: Layers = ()


@register_method("pkt", PKTParams, tasks=IMAGES)
class ProbabilisticKT(nn.Module):
    """Probabilistic knowledge transfer (Passalis & Tefas 2018): KL between cosine-kernel neighbour laws."""

    needs_teacher = True
    term, reduce = "pkt", "mean"

    def __init__(self, params: PKTParams, context: MethodContext) -> None:
        super().__init__()
        _setup(self, "pkt", params, context, "embedding")

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        return _terms(self, pkt_loss, student, teacher, batch)


@dataclass
class GKDParams:
    """Graph-based geometric KD (Lassance et al. 2020). λ = 25, γ = 1, p = 1, all edges, no k-NN (graph_kd's released
    runs). Default layers: ``stage_names[:-1] + (embedding_name,)`` — the paper's [stage 1, stage 2, pooled
    stage 3]. The loss sums the B² squared differences (of O(1/B) entries: the sum stays O(1) in B but is not
    batch-size free; λ was tuned at batch 128) and averages the layers.
    ``edges``: intra/inter keep only same-class/different-class edges (labels −1 belong to neither; under
    mixup the label of the larger share). ``k``: keep each node's k strongest teacher edges (k ≥ B: off)."""

    weight: float = 25.0
    ce_weight: float = 1.0
    edges: Edges = "all"
    k: int | None = None
    power: int = 1
    student_layers: Layers = ()
    teacher_layers: Layers = ()

    def __post_init__(self) -> None:
        require(
            self.power >= 1 and (self.k is None or self.k >= 1),
            f"gkd needs method.power ≥ 1 and method.k ≥ 1 (or null); got power={self.power}, k={self.k}.",
        )


@register_method("gkd", GKDParams, tasks=IMAGES)
class GeometricKD(nn.Module):
    """Graph-based geometric KD (Lassance et al. 2020): match degree-normalised cosine graphs of the batch."""

    needs_teacher = True
    term, reduce = "gkd", "mean"

    def __init__(self, params: GKDParams, context: MethodContext) -> None:
        super().__init__()
        _setup(self, "gkd", params, context, gkd_default_layers)

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        p, labels, mix = self.params, batch.y, image_extras(batch)
        if mix.mix_perm is not None and mix.mix_lambda is not None and mix.mix_lambda < 0.5:
            labels = labels[mix.mix_perm]

        def loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return gkd_loss(s, t, labels, edges=p.edges, k=p.k, power=p.power)

        return _terms(self, loss, student, teacher, batch)


@dataclass
class TopologyParams:
    """Full topology distillation (FTD). The paper's λ_TD could not be established here; ``weight`` = 0.001 is
    the authors' example notebook value. The loss sums over the B² pairs, so it grows with the batch size:
    at batch 256 with weight 1 it swamped the label loss and the student diverged (measured on Fashion-MNIST),
    at 0.001 it is of the order of the label loss. Default layer = embedding."""

    weight: float = 0.001
    ce_weight: float = 1.0
    student_layers: Layers = ()
    teacher_layers: Layers = ()


@register_method("topology", TopologyParams, tasks=IMAGES)
class TopologyDistillation(nn.Module):
    """Full topology distillation (Kang et al. 2021): match the batch's cosine relation matrix."""

    needs_teacher = True
    term, reduce = "topology", "mean"

    def __init__(self, params: TopologyParams, context: MethodContext) -> None:
        super().__init__()
        _setup(self, "topology", params, context, "embedding")

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        return _terms(self, topology_loss, student, teacher, batch)
