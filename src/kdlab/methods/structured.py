"""Distillation methods for structured predictors (Wang et al. 2021, "Structural Knowledge Distillation").

Every method returns ``{"kd": λ·distillation loss, "ce": (1 − λ)·label loss}``: the label loss (CRF NLL,
token cross-entropy, or the parser's head + relation cross-entropy; :mod:`kdlab.tasks.structured.labels`) over the
sentences that have labels, the distillation loss over every sentence of the batch, both summed over tokens and
averaged over sentences. With ``teacher_annealing`` λ falls linearly from 1 (pure distillation) at the first epoch
to ``max(0, 1 − anneal_factor)`` at the end of the run (the official code's schedule, in units of the run's length
instead of 100 epochs); otherwise the labels weigh ``ce_weight`` (as in every method) and λ = 1 − ``ce_weight``.
(The label-only ``ce`` method is the task's label loss: :mod:`kdlab.methods.logit`.)

The kind of teacher and student (``crf`` / ``maxent`` tagger, ``parser``, ``labeler`` = a MaxEnt tagger over
(head offset, relation) labels) picks the case: 1a CRF → CRF, 2a CRF → MaxEnt, 3 MaxEnt → CRF, 1b parser →
labeler; ``temperature: null`` takes the official configuration's τ for that case (3, 5, 1, 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.data.sentences.encoding import Task
from kdlab.data.sentences.labels import LabelTable
from kdlab.data.sentences.loader import SentenceExtras
from kdlab.losses.logits import tempered_log_softmax
from kdlab.losses.structured import (
    TemperatureMode,
    crf_teacher_marginals,
    parse_label_log_marginals,
    posterior_kd,
    product_marginals,
    structural_kd_crf,
    structural_kd_tokens,
    token_kd,
    top_k_crf,
    top_k_tokens,
    top_k_weights,
)
from kdlab.methods.base import MethodContext, register_method, require
from kdlab.models.sequence import chain_of
from kdlab.ops.crf import Chain, k_best, log_marginals
from kdlab.ops.trees import decode_mst, head_selection_log_marginals, matrix_tree_marginals

TAGGING = ("sequence_labelling",)
STRUCTURES = ("sequence_labelling", "dependency_parsing")
CASE_TEMPERATURE = {"1a": 3.0, "2a": 5.0, "3": 1.0, "1b": 3.0, "token": 3.0}
ArcMarginals = Literal["head_selection", "matrix_tree"]


@dataclass
class Mixing:
    """λ·KD + (1 − λ)·labels; the paper's configurations anneal λ from 1. Without annealing the labels weigh
    ``ce_weight`` = 1 − λ."""

    RENAMED: ClassVar[dict[str, str]] = {
        "interpolation": "ce_weight, the weight of the label loss as in every method (the distillation term "
        "weighs 1 − ce_weight): interpolation=λ becomes ce_weight=1 − λ."
    }
    ce_weight: float = 0.5
    teacher_annealing: bool = True
    anneal_factor: float = 0.5

    def __post_init__(self) -> None:
        require(
            0.0 <= self.ce_weight <= 1.0 and self.anneal_factor >= 0,
            f"method.ce_weight must lie in [0, 1] and method.anneal_factor be ≥ 0; got ce_weight={self.ce_weight}, "
            f"anneal_factor={self.anneal_factor}.",
        )


def case_of(teacher: str, student: str) -> str:
    """The StructuralKD case of a (teacher kind, student kind) pair."""
    cases = {("crf", "crf"): "1a", ("crf", "maxent"): "2a", ("maxent", "crf"): "3", ("maxent", "maxent"): "token",
             ("parser", "labeler"): "1b"}  # fmt: skip
    if (teacher, student) not in cases:
        raise ConfigError(
            f"Structured distillation from a {teacher} teacher to a {student} student is not defined; supported "
            "(teacher → student): crf → crf (1a), crf → maxent (2a), maxent → crf (3), maxent → maxent, "
            "parser (biaffine) → labeler (a maxent tagger on parsing data, 1b)."
        )
    return cases[(teacher, student)]


@dataclass
class SequenceContext:
    """What a structured method is built with (its :attr:`MethodContext.extras`): the data's kind of labels
    (``tagging`` or ``parsing``), the kinds of student and teacher (``crf``, ``maxent``, ``parser``, ``labeler``;
    ``none`` without a teacher) and a labeller's (head offset, relation) label set."""

    task: Task
    student_kind: str
    teacher_kind: str
    table: LabelTable | None = None

    def require_taggers(self, method: str) -> None:
        if self.task != "tagging":
            raise ConfigError(
                f"Method {method!r} compares token distributions of two taggers; for parsing use structural_kd, "
                "top_k_kd (the teacher's best tree) or ce."
            )


def sequence_context(context: MethodContext) -> SequenceContext:
    if not isinstance(context.extras, SequenceContext):
        raise ConfigError("Structured methods distil taggers and parsers; this task has no sequence models.")
    return context.extras


class SequenceMethod(nn.Module):
    """The label term, λ and the bookkeeping shared by every structured method."""

    needs_teacher = True
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: Mixing, context: MethodContext) -> None:
        super().__init__()
        self.params, self.context = params, sequence_context(context)
        self.label_loss = context.label_loss
        # λ on the distillation term; the labels weigh ce_weight = 1 − λ (annealed from λ = 1 when asked)
        self.weight = 1.0 if params.teacher_annealing else 1.0 - params.ce_weight
        self.case = case_of(self.context.teacher_kind, self.context.student_kind)
        self.record = {"case": self.case}  # added to the run's summary

    def start_epoch(self, epoch: int, epochs: int) -> None:
        if self.params.teacher_annealing:
            self.weight = max(0.0, 1.0 - self.params.anneal_factor * epoch / max(1, epochs - 1))

    @property
    def temperature(self) -> float:
        tau = getattr(self.params, "temperature", None)
        return CASE_TEMPERATURE.get(self.case, 1.0) if tau is None else float(tau)

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        assert teacher is not None
        label_term = self.label_loss(student, batch)
        kd = self.distill(student, teacher, batch, mask_of(batch)).mean()
        return {"kd": self.weight * kd, "ce": (1.0 - self.weight) * label_term}

    def distill(self, student: ModelOutput, teacher: ModelOutput, batch: Batch, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # the teacher's token distributions [B, n, L] at τ = 1 (CRF: forward–backward marginals)
    def teacher_token_log_probs(self, teacher: ModelOutput, mask: torch.Tensor) -> torch.Tensor:
        if self.context.teacher_kind == "crf":
            return log_marginals(chain_of(teacher, mask)).tokens
        return F.log_softmax(teacher.logits.float(), -1)


def mask_of(batch: Batch) -> torch.Tensor:
    """``[B, n]`` word positions that exist (from the batch's :class:`SentenceExtras`)."""
    assert isinstance(batch.extras, SentenceExtras), "structured methods read batches of sentences"
    return batch.extras.mask


@dataclass
class TokenKDParams(Mixing):
    temperature: float | None = None


@register_method("token_kd", TokenKDParams, tasks=TAGGING)
class TokenKD(SequenceMethod):
    """Token KD: τ² Σ_i KL(softmax(e_t,i/τ) ‖ softmax(e_s,i/τ)) on the emission scores (a CRF teacher's
    transitions are ignored)."""

    def __init__(self, params: TokenKDParams, context: MethodContext) -> None:
        super().__init__(params, context)
        self.context.require_taggers("token_kd")

    def distill(self, student: ModelOutput, teacher: ModelOutput, batch: Batch, mask: torch.Tensor) -> torch.Tensor:
        return token_kd(student.logits, teacher.logits, mask, self.temperature)


@dataclass
class PosteriorKDParams(Mixing):
    temperature: float | None = None


@register_method("posterior_kd", PosteriorKDParams, tasks=TAGGING)
class PosteriorKD(SequenceMethod):
    """Posterior KD (Wang et al. 2020a): τ² Σ_i KL between the locally tempered token marginals of teacher and
    student (forward–backward for CRFs, the softmax for MaxEnt taggers)."""

    def __init__(self, params: PosteriorKDParams, context: MethodContext) -> None:
        super().__init__(params, context)
        self.context.require_taggers("posterior_kd")

    def distill(self, student: ModelOutput, teacher: ModelOutput, batch: Batch, mask: torch.Tensor) -> torch.Tensor:
        q = self.teacher_token_log_probs(teacher, mask)
        if self.context.student_kind == "crf":
            return posterior_kd(chain_of(student, mask), q, self.temperature)
        return token_kd(student.logits, q, mask, self.temperature)


@dataclass
class TopKParams(Mixing):
    k: int = 10
    weighted: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.k >= 1, f"top_k_kd needs method.k ≥ 1; got {self.k}.")


@register_method("top_k_kd", TopKParams, tasks=STRUCTURES)
class TopKKD(SequenceMethod):
    """Top-K KD (Kim & Rush 2016): the student's NLL of the teacher's k best structures, weighted uniformly or
    (``weighted``) by the softmax of their teacher scores. A parser teacher gives its best tree (k = 1)."""

    def __init__(self, params: TopKParams, context: MethodContext) -> None:
        super().__init__(params, context)
        if self.context.teacher_kind == "parser" and params.k != 1:
            raise ConfigError(f"method.k must be 1 for a parser teacher (its best tree); got {params.k}.")

    def distill(self, student: ModelOutput, teacher: ModelOutput, batch: Batch, mask: torch.Tensor) -> torch.Tensor:
        if self.context.teacher_kind == "parser":
            labels = self.context.table.labels_of(teacher_tree(teacher, mask))
            known = mask & (labels >= 0)
            return top_k_tokens(student.logits, labels.clamp_min(0)[:, None], torch.ones_like(labels[:, :1]).float(),
                                known)  # fmt: skip
        if self.context.teacher_kind == "crf":
            chain = chain_of(teacher, mask)
        else:
            tags = teacher.logits.shape[-1]
            zeros = teacher.logits.new_zeros(tags, dtype=torch.float32)
            chain = Chain(teacher.logits.float(), zeros.new_zeros(tags, tags), zeros, zeros, mask)
        sequences, scores = k_best(chain, self.params.k)
        weights = top_k_weights(scores, self.params.weighted)
        if self.context.student_kind == "crf":
            return top_k_crf(chain_of(student, mask), sequences, weights)
        return top_k_tokens(student.logits, sequences, weights, mask)


def teacher_tree(teacher: ModelOutput, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A parser's best tree (maximum spanning tree, one root) and each word's best relation for that head."""
    heads = decode_mst(teacher.logits.float(), mask)
    relations = teacher.structure["relations"]
    rel = relations.gather(2, heads[:, :, None, None].expand(-1, -1, 1, relations.shape[-1])).squeeze(2).argmax(-1)
    return heads, rel


@dataclass
class StructuralKDParams(Mixing):
    temperature: float | None = None
    teacher_temperature: TemperatureMode = "local"
    arc_marginals: ArcMarginals = "head_selection"


@register_method("structural_kd", StructuralKDParams, tasks=STRUCTURES)
class StructuralKD(SequenceMethod):
    """Structural KD: the cross-entropy between the teacher's and the student's distributions over whole
    structures, factorized over the student's substructures with the teacher's marginals (cases 1a, 2a, 3, 1b)."""

    def distill(self, student: ModelOutput, teacher: ModelOutput, batch: Batch, mask: torch.Tensor) -> torch.Tensor:
        tau, mode = self.temperature, self.params.teacher_temperature
        case = self.case
        if case == "1a":
            q = crf_teacher_marginals(chain_of(teacher, mask), tau, mode)
            return structural_kd_crf(chain_of(student, mask), q, tau, clamp=True)
        if case == "2a":
            q = crf_teacher_marginals(chain_of(teacher, mask), tau, mode)
            return structural_kd_tokens(student.logits, q.tokens, mask, tau)
        if case == "3":  # a product of token distributions: local = global temperature
            q = product_marginals(tempered_log_softmax(teacher.logits, tau), mask)
            return structural_kd_crf(chain_of(student, mask), q, tau, clamp=True)
        if case == "token":
            return token_kd(student.logits, teacher.logits, mask, tau)
        return structural_kd_tokens(student.logits, self.parse_targets(teacher, mask), mask, tau)

    def parse_targets(self, teacher: ModelOutput, mask: torch.Tensor) -> torch.Tensor:
        """Case 1b: q_m(offset, relation) = P(head = h | m) · P(rel = r | m, h) mapped onto the student's labels.

        ``local`` (the official code's): the arc marginals (head selection, or the matrix-tree theorem's) and the
        relation distributions are computed at τ = 1 and each re-normalized per word as softmax(log p / τ).
        ``global`` (exact): the marginals of the tempered teacher P(tree, relations)^{1/τ}, which factorizes as
        arc potentials s(h→m)/τ + log Σ_r P(r | m, h)^{1/τ} times softmax_r(log P(r | m, h)/τ).
        """
        tau, arcs = self.temperature, teacher.logits.float()
        relations = F.log_softmax(teacher.structure["relations"].float(), -1)
        if self.params.teacher_temperature == "global":
            tempered = relations / tau
            arcs = arcs / tau + torch.logsumexp(tempered, -1)
            relations = F.log_softmax(tempered, -1)
        if self.params.arc_marginals == "matrix_tree":
            heads = matrix_tree_marginals(arcs, mask).clamp_min(1e-30).log()
        else:
            heads = head_selection_log_marginals(arcs, mask)
        if self.params.teacher_temperature == "local":
            heads = head_selection_log_marginals(heads, mask, tau)  # softmax(log μ / τ) over each word's heads
            relations = tempered_log_softmax(relations, tau)
        table: LabelTable = self.context.table
        return parse_label_log_marginals(heads, relations, table.offsets, table.relations, mask)
