"""Contrastive representation distillation ``crd`` (Tian, Krishnan & Isola, ICLR 2020).

Student and teacher penultimate features go through trainable linear heads to ``feature_dim`` and are
L2-normalised. Each model has a memory bank ``[num_train, feature_dim]`` of past embeddings, indexed by
``batch.index``. The student's embedding is contrasted with the teacher bank (positive: the bank row of
the same example; negatives: N uniformly drawn other rows) and the teacher's embedding with the student
bank, as in the authors' code (RepDistiller ``crd/memory.py``); after the loss the banks' rows of the
batch become ``normalise(m·row + (1 − m)·embedding)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.losses.contrastive import contrast_scores, estimate_partition, nce_loss
from kdlab.losses.logits import at_least_float32
from kdlab.methods.base import MethodContext, register_method, require, with_labels
from kdlab.methods.layers import feature_shapes, pick_layers, require_rank
from kdlab.methods.logit import IMAGES


@dataclass
class CRDParams:
    """CRD with RepDistiller's CIFAR defaults (β 0.8, γ 1, τ 0.07, m 0.5, 128-d, 4096 negatives; the
    paper uses 16384 on ImageNet, Ojha et al. τ 0.1 and 32 negatives on MNIST). ``negatives`` is clamped
    to ``num_train − 1``. ``partition``: ``first_batch`` divides ``e^{s/τ}`` by Z = M·mean(e^{s/τ})
    estimated on the first batch and kept (the authors' code); ``one`` uses Z = 1 (the formula as
    printed). ``positive``: ``bank`` scores the anchor against the other model's bank row of the same
    example (the authors' code); ``current`` against the other model's embedding in this step, s(x)·t(x)
    (the paper's formula)."""

    weight: float = 0.8
    ce_weight: float = 1.0
    temperature: float = 0.07
    feature_dim: int = 128
    negatives: int = 4096
    momentum: float = 0.5
    partition: Literal["first_batch", "one"] = "first_batch"
    positive: Literal["bank", "current"] = "bank"
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        require(
            self.feature_dim >= 1 and self.negatives >= 1 and 0.0 <= self.momentum < 1.0,
            "crd needs method.feature_dim ≥ 1, method.negatives ≥ 1 and 0 ≤ method.momentum < 1; got "
            f"feature_dim={self.feature_dim}, negatives={self.negatives}, momentum={self.momentum}.",
        )


class Embed(nn.Module):
    """Flatten, linear map to ``dim``, L2-normalise (computed in float32 or better)."""

    def __init__(self, in_features: int, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(at_least_float32(self.linear(x.flatten(1))), dim=1)


def _bank(num_train: int, dim: int, device: torch.device) -> torch.Tensor:
    # As the authors' code: U(−a, a) with a = 1/sqrt(dim/3), so that each row has unit norm on average.
    bound = 1.0 / math.sqrt(dim / 3)
    return torch.rand(num_train, dim, device=device).mul_(2 * bound).sub_(bound)


@register_method("crd", CRDParams, tasks=IMAGES)
class ContrastiveRepresentation(nn.Module):
    """CRD: NCE between student and teacher embeddings, with momentum memory banks of negatives."""

    needs_teacher = True

    def __init__(self, params: CRDParams, context: MethodContext) -> None:
        super().__init__()
        p = params
        if context.num_train < 2:
            raise ConfigError(
                f"crd needs the training-set size to size its memory banks (got num_train={context.num_train}): "
                "train on a data set kdlab can index (a data-set name, tensors or a map-style Dataset, whose "
                "batches carry sample indices), with at least 2 examples."
            )
        teacher = context.teacher_model("crd")
        self.student_layers = pick_layers(context.student, p.student_layers, "embedding", owner="student", method="crd")
        self.teacher_layers = pick_layers(teacher, p.teacher_layers, "embedding", owner="teacher", method="crd")
        if len(self.student_layers) != 1 or len(self.teacher_layers) != 1:
            raise ConfigError(
                f"crd contrasts one student layer with one teacher layer; got student layers "
                f"{list(self.student_layers)} and teacher layers {list(self.teacher_layers)}."
            )
        sizes = []
        for owner, model, layer in (
            ("student", context.student, self.student_layers[0]),
            ("teacher", teacher, self.teacher_layers[0]),
        ):
            shape = feature_shapes(model, [layer], context.input_shape, owner=owner)[layer]
            require_rank("crd", owner, layer, shape, {1, 2, 3}, "a feature vector per example (maps are flattened)")
            sizes.append(math.prod(shape))
        self.params, self.label_loss = p, context.label_loss
        self.num_train = context.num_train
        # more negatives than other examples would only repeat them: clamp, as documented in CRDParams
        self.num_negatives = min(p.negatives, context.num_train - 1)
        device = next(iter(context.student.parameters()), torch.empty(0)).device
        self.embed_student = Embed(sizes[0], p.feature_dim).to(device)
        self.embed_teacher = Embed(sizes[1], p.feature_dim).to(device)
        self.register_buffer("memory_student", _bank(context.num_train, p.feature_dim, device))
        self.register_buffer("memory_teacher", _bank(context.num_train, p.feature_dim, device))
        # Z for (student anchor, teacher anchor); 0 = not yet estimated. A buffer, so a resume keeps it.
        start = 0.0 if p.partition == "first_batch" else 1.0
        self.register_buffer("partition", torch.full((2,), start, device=device))

    def sample(self, index: torch.Tensor) -> torch.Tensor:
        """``[B, 1 + N]`` bank rows: the example itself, then N others drawn uniformly with replacement
        by the global RNG (a resumed run replays them). Drawing from M − 1 values and stepping over the
        positive excludes it (the authors' code may draw it as a negative)."""
        draws = torch.randint(0, self.num_train - 1, (index.shape[0], self.num_negatives), device=index.device)
        positive = index.unsqueeze(1)
        return torch.cat([positive, draws + (draws >= positive).long()], dim=1)

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        assert teacher is not None
        p = self.params
        s = self.embed_student(student.features[self.student_layers[0]])
        t = self.embed_teacher(teacher.features[self.teacher_layers[0]])
        index = batch.index.to(self.memory_student.device, torch.long)
        rows = self.sample(index)
        scores_s = contrast_scores(s, self.memory_teacher, rows)
        scores_t = contrast_scores(t, self.memory_student, rows)
        if p.positive == "current":
            pair = (s * t).sum(1, keepdim=True)
            scores_s, scores_t = torch.cat([pair, scores_s[:, 1:]], 1), torch.cat([pair, scores_t[:, 1:]], 1)
        estimate = torch.stack([estimate_partition(x, self.num_train, p.temperature) for x in (scores_s, scores_t)])
        z = torch.where(self.partition > 0, self.partition, estimate)
        loss = nce_loss(scores_s, self.num_train, p.temperature, z[0]) + nce_loss(
            scores_t, self.num_train, p.temperature, z[1]
        )
        if self.training:
            with torch.no_grad():
                self.partition.copy_(z)
                # out of place: the backward pass of the scores still needs this step's banks
                for name, value in (("memory_student", s), ("memory_teacher", t)):
                    bank = getattr(self, name)
                    mixed = bank[index].mul_(p.momentum).add_(value.detach().to(bank.dtype), alpha=1.0 - p.momentum)
                    setattr(self, name, bank.index_copy(0, index, F.normalize(mixed, dim=1)))
        terms = {"crd": p.weight * loss}
        return with_labels(terms, p.ce_weight, self.label_loss, student, batch)
