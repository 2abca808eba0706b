"""Token-level distillation of transformer encoders for ``text_classification``: ``tinybert`` (Jiao et al. 2020),
``minilm`` (Wang et al. 2020), ``minilm_v2`` (Wang et al. 2021) and ``attention_cls`` (Aguilar et al. 2020).

Student and teacher are Hugging Face encoders (:func:`kdlab.models.encoders.encoder_anatomy`); every feature comes
from a forward hook on a block, the embeddings or an attention projection, never from ``output_attentions``. Layer
maps use hidden-state indices: 0 = the embeddings, i = the output of block i (1..L). Every loss is masked by the
batch's ``attention_mask``; teacher features, which a cache may hold padded to a longer length, are cut to the
batch's length first. All these methods compare token by token, so teacher and student must read the same tokens.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.losses.encoder import (
    attention_kl,
    attention_probabilities,
    attention_score_mse,
    attention_scores,
    cls_cosine,
    hidden_mse,
    relation_kl,
)
from kdlab.losses.logits import kd, soft_cross_entropy
from kdlab.methods.base import MethodContext, register_method, require, with_labels
from kdlab.models.encoders import EncoderAnatomy, encoder_anatomy, hidden_tensor, layer_pairs

TEXT = ("text_classification",)
LAYER_MAP_HELP = "'uniform', 'last' or a list of [student, teacher] hidden-state index pairs"


@dataclass
class TextContext:
    """What the text task tells its methods (as ``MethodContext.extras``; None = the same tokenizer)."""

    same_tokenizer: bool = True


def _require_layer_map(name: str, layer_map: object) -> None:
    if isinstance(layer_map, str):
        require(layer_map in ("uniform", "last"), f"{name}.layer_map must be {LAYER_MAP_HELP}; got {layer_map!r}.")


def _require_heads(name: str, student: EncoderAnatomy, teacher: EncoderAnatomy, what: str) -> None:
    if student.num_heads != teacher.num_heads:
        raise ConfigError(
            f"{name} compares {what} head by head, so student and teacher need the same number of attention heads; "
            f"the student ({student.model_class}) has {student.num_heads} and the teacher ({teacher.model_class}) "
            f"{teacher.num_heads}. Build the student with num_attention_heads={teacher.num_heads}"
            f"{', or use minilm_v2, whose relation heads are its own' if name == 'minilm' else ''}."
        )


@dataclass
class Features:
    """One model's tapped features on a batch of length ``length``, read by hidden-state index or by block (0-based);
    teacher features a cache holds padded further are cut to ``length``."""

    output: ModelOutput
    anatomy: EncoderAnatomy
    length: int

    def read(self, path: str) -> torch.Tensor:
        return hidden_tensor(self.output.features[path])[:, : self.length]

    def hidden(self, index: int) -> torch.Tensor:
        return self.read(self.anatomy.hidden(index))

    def projection(self, role: str, block: int) -> torch.Tensor:
        """Block ``block``'s ``query``, ``key`` or ``value`` projection ``[B, T, d]``."""
        return self.read(getattr(self.anatomy, role)[block])

    def scores(self, block: int) -> torch.Tensor:
        return attention_scores(self.projection("query", block), self.projection("key", block), self.anatomy.num_heads)

    def probabilities(self, block: int, mask: torch.Tensor) -> torch.Tensor:
        query, key = self.projection("query", block), self.projection("key", block)
        return attention_probabilities(query, key, self.anatomy.num_heads, mask)


class EncoderMethod(nn.Module):
    """What the encoder methods share: the checks of both models, the tapped paths, and reading the features."""

    needs_teacher = True

    def __init__(self, name: str, params: object, context: MethodContext) -> None:
        extras = context.extras
        if isinstance(extras, TextContext) and not extras.same_tokenizer:
            raise ConfigError(
                f"Method {name!r} compares teacher and student token by token: token-level methods need teacher and "
                "student to read the same tokens, and here their tokenizers differ; use a logit method such as kd, "
                "or give the student the teacher's tokenizer."
            )
        teacher = context.teacher_model(name)
        super().__init__()
        self.params: Any = params
        self.label_loss = context.label_loss
        self.student_anatomy, self.teacher_anatomy = encoder_anatomy(context.student), encoder_anatomy(teacher)
        self.device = next(iter(context.student.parameters()), torch.empty(0)).device
        self.student_layers: tuple[str, ...] = ()
        self.teacher_layers: tuple[str, ...] = ()

    def tap(self, student: Iterable[str], teacher: Iterable[str]) -> None:
        self.student_layers, self.teacher_layers = tuple(dict.fromkeys(student)), tuple(dict.fromkeys(teacher))

    def features(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> tuple[torch.Tensor, Features, Features]:
        """The batch's ``[B, T]`` attention mask (every token when the inputs carry none) and both models' features."""
        assert teacher is not None
        x = batch.x
        if not isinstance(x, Mapping):
            raise ConfigError("The encoder methods read text batches: a mapping with input_ids and attention_mask.")
        mask = x.get("attention_mask")
        mask = torch.ones_like(x["input_ids"], dtype=torch.bool) if mask is None else mask.bool()
        length = mask.shape[1]
        return mask, Features(student, self.student_anatomy, length), Features(teacher, self.teacher_anatomy, length)

    def logit_terms(
        self, terms: dict[str, torch.Tensor], student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        """``terms`` plus ``kd_weight`` × Hinton's KD at ``temperature`` and ``ce_weight`` × the label loss."""
        p = self.params
        if p.kd_weight > 0 and teacher is not None:
            terms["kd"] = p.kd_weight * kd(student.logits, teacher.logits, p.temperature)
        return with_labels(terms, p.ce_weight, self.label_loss, student, batch)


def _projection(student: int, teacher: int, device: torch.device, *, always: bool) -> nn.Module:
    return nn.Linear(student, teacher).to(device) if always or student != teacher else nn.Identity()


def _attention_paths(anatomy: EncoderAnatomy, blocks: Iterable[int]) -> list[str]:
    return [path for block in blocks for path in (anatomy.query[block], anatomy.key[block])]


@dataclass
class TinyBERTParams:
    """TinyBERT (Jiao et al. 2020): unit weights on the embedding, hidden-state, attention and prediction losses
    (their λ = 1), the prediction loss at τ = 1 (the paper's choice), no label term. ``layer_map`` pairs blocks by
    hidden-state index (1..L; "uniform" is the paper's g(m) = m·N/M); the embeddings (index 0 ↔ 0) are always the
    embedding term. The paper's two stages in one run: ``intermediate_epochs`` > 0 trains the first epochs on the
    intermediate terms only and the rest on the prediction term (and the labels) only; 0 trains every term jointly."""

    embedding_weight: float = 1.0
    hidden_weight: float = 1.0
    attention_weight: float = 1.0
    prediction_weight: float = 1.0
    temperature: float = 1.0
    ce_weight: float = 0.0
    layer_map: str | list[list[int]] = "uniform"
    intermediate_epochs: int = 0

    def __post_init__(self) -> None:
        _require_layer_map("tinybert", self.layer_map)
        require(
            self.intermediate_epochs >= 0, f"tinybert.intermediate_epochs must be ≥ 0; got {self.intermediate_epochs}."
        )


@register_method("tinybert", TinyBERTParams, tasks=TEXT)
class TinyBERT(EncoderMethod):
    """TinyBERT: MSE of projected embeddings and hidden states and of attention scores, soft cross-entropy of logits."""

    def __init__(self, params: TinyBERTParams, context: MethodContext) -> None:
        super().__init__("tinybert", params, context)
        s, t = self.student_anatomy, self.teacher_anatomy
        self.pairs = layer_pairs(params.layer_map, s.num_layers, t.num_layers, method="tinybert", lowest=1)
        _require_heads("tinybert", s, t, "attention scores")
        if params.intermediate_epochs > context.epochs:
            raise ConfigError(
                f"tinybert.intermediate_epochs = {params.intermediate_epochs} is more than the run's {context.epochs} "
                f"epochs; choose 0 (every term jointly) to {context.epochs} (intermediate layers only)."
            )
        self.tap(
            [s.hidden(0), *(s.hidden(m) for m, _ in self.pairs), *_attention_paths(s, (m - 1 for m, _ in self.pairs))],
            [t.hidden(0), *(t.hidden(n) for _, n in self.pairs), *_attention_paths(t, (n - 1 for _, n in self.pairs))],
        )
        # TinyBERT's W_e and W_h: learned even for equal widths (its official code shares one W for every layer)
        self.embedding_projection = _projection(s.hidden_size, t.hidden_size, self.device, always=True)
        self.hidden_projections = nn.ModuleList(
            _projection(s.hidden_size, t.hidden_size, self.device, always=True) for _ in self.pairs
        )
        self.start_epoch(0, context.epochs)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        staged = self.params.intermediate_epochs > 0
        self.intermediate = not staged or epoch < self.params.intermediate_epochs
        self.prediction = not staged or not self.intermediate

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        p = self.params
        mask, s, t = self.features(student, teacher, batch)
        terms: dict[str, torch.Tensor] = {}
        if self.intermediate and p.embedding_weight > 0:
            embedding = hidden_mse(self.embedding_projection(s.hidden(0)), t.hidden(0), mask)
            terms["embedding"] = p.embedding_weight * embedding
        if self.intermediate and p.hidden_weight > 0:
            hidden = [
                hidden_mse(project(s.hidden(m)), t.hidden(n), mask)
                for project, (m, n) in zip(self.hidden_projections, self.pairs, strict=True)
            ]
            terms["hidden"] = p.hidden_weight * torch.stack(hidden).sum()
        if self.intermediate and p.attention_weight > 0:
            attention = [attention_score_mse(s.scores(m - 1), t.scores(n - 1), mask) for m, n in self.pairs]
            terms["attention"] = p.attention_weight * torch.stack(attention).sum()
        if not self.prediction:
            return terms
        if p.prediction_weight > 0:
            # TinyBERT's L_pred: soft cross-entropy at τ, no τ² factor (the KL's gradient; it logs the entropy too)
            prediction = soft_cross_entropy(student.logits, t.output.logits, p.temperature).mean()
            terms["prediction"] = p.prediction_weight * prediction
        return with_labels(terms, p.ce_weight, self.label_loss, student, batch)


@dataclass
class MiniLMParams:
    """MiniLM (Wang et al. 2020): the sum of the last block's attention-distribution KL and value-relation KL (unit
    weights, as the paper). The paper distils task-agnostically and fine-tunes afterwards; in one classification run
    the label term (``ce_weight`` = 1) trains the classifier, and ``kd_weight`` > 0 adds Hinton's KD at
    ``temperature``."""

    attention_weight: float = 1.0
    value_weight: float = 1.0
    kd_weight: float = 0.0
    temperature: float = 1.0
    ce_weight: float = 1.0


@register_method("minilm", MiniLMParams, tasks=TEXT)
class MiniLM(EncoderMethod):
    """MiniLM: KL of the last layer's self-attention distributions and of its value relations (equal head counts)."""

    def __init__(self, params: MiniLMParams, context: MethodContext) -> None:
        super().__init__("minilm", params, context)
        s, t = self.student_anatomy, self.teacher_anatomy
        _require_heads("minilm", s, t, "attention distributions and value relations")
        self.tap([s.query[-1], s.key[-1], s.value[-1]], [t.query[-1], t.key[-1], t.value[-1]])

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        p = self.params
        mask, s, t = self.features(student, teacher, batch)
        terms: dict[str, torch.Tensor] = {}
        if p.attention_weight > 0:  # block −1: the last one of each model
            terms["attention"] = p.attention_weight * attention_kl(
                s.probabilities(-1, mask), t.probabilities(-1, mask), mask
            )
        if p.value_weight > 0:
            values = s.projection("value", -1), t.projection("value", -1)
            terms["value_relation"] = p.value_weight * relation_kl(*values, s.anatomy.num_heads, mask)
        return self.logit_terms(terms, student, teacher, batch)


@dataclass
class MiniLMv2Params:
    """MiniLM v2 (Wang et al. 2021): unit weights on the Q-Q, K-K and V-V relation KLs (summed) with 12 relation
    heads (their base-size setting) between the student's last block and ``teacher_layer`` (a hidden-state index
    1..N; None = the last block; the paper takes an upper-middle layer of large teachers). Labels and KD as MiniLM."""

    query_weight: float = 1.0
    key_weight: float = 1.0
    value_weight: float = 1.0
    relation_heads: int = 12
    teacher_layer: int | None = None
    kd_weight: float = 0.0
    temperature: float = 1.0
    ce_weight: float = 1.0

    def __post_init__(self) -> None:
        require(self.relation_heads >= 1, f"minilm_v2.relation_heads must be ≥ 1; got {self.relation_heads}.")


@register_method("minilm_v2", MiniLMv2Params, tasks=TEXT)
class MiniLMv2(EncoderMethod):
    """MiniLM v2: KL of multi-head self-relations of queries, keys and values (any head counts and widths)."""

    ROLES = ("query", "key", "value")

    def __init__(self, params: MiniLMv2Params, context: MethodContext) -> None:
        super().__init__("minilm_v2", params, context)
        s, t = self.student_anatomy, self.teacher_anatomy
        layer = t.num_layers if params.teacher_layer is None else params.teacher_layer
        if not 1 <= layer <= t.num_layers:
            raise ConfigError(
                f"minilm_v2.teacher_layer = {layer} is not a block of the teacher ({t.model_class}, {t.num_layers} "
                f"blocks): give a hidden-state index from 1 to {t.num_layers}, or null for the last block."
            )
        widths = math.gcd(s.hidden_size, t.hidden_size)
        if widths % params.relation_heads:
            divisors = [d for d in range(1, widths + 1) if widths % d == 0]
            raise ConfigError(
                f"minilm_v2.relation_heads = {params.relation_heads} must divide both the student's width "
                f"{s.hidden_size} and the teacher's {t.hidden_size}; choose one of {', '.join(map(str, divisors))}."
            )
        self.block = layer - 1
        self.tap([getattr(s, role)[-1] for role in self.ROLES], [getattr(t, role)[self.block] for role in self.ROLES])

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        p = self.params
        mask, s, t = self.features(student, teacher, batch)
        terms: dict[str, torch.Tensor] = {}
        for role in self.ROLES:
            weight = getattr(p, f"{role}_weight")
            if weight > 0:
                relation = relation_kl(s.projection(role, -1), t.projection(role, self.block), p.relation_heads, mask)
                terms[f"{role}_relation"] = weight * relation
        return self.logit_terms(terms, student, teacher, batch)


@dataclass
class AttentionCLSParams:
    """Aguilar et al. (2020), internal-representation distillation: KL of every head's attention rows and
    1 − cosine of the [CLS] hidden vectors of the mapped blocks (projected to the teacher's width where the widths
    differ), plus soft-label KD. The paper distils progressively (PID/SID), a group of layers at a time; here every
    term trains jointly, with unit weights and τ = 1 (our choices) and the blocks mapped uniformly by default."""

    attention_weight: float = 1.0
    cls_weight: float = 1.0
    kd_weight: float = 1.0
    temperature: float = 1.0
    ce_weight: float = 0.0
    layer_map: str | list[list[int]] = "uniform"

    def __post_init__(self) -> None:
        _require_layer_map("attention_cls", self.layer_map)


@register_method("attention_cls", AttentionCLSParams, tasks=TEXT)
class AttentionCLS(EncoderMethod):
    """Aguilar et al. internal distillation: attention-row KL and [CLS] cosine of mapped blocks, plus soft-label KD."""

    def __init__(self, params: AttentionCLSParams, context: MethodContext) -> None:
        super().__init__("attention_cls", params, context)
        s, t = self.student_anatomy, self.teacher_anatomy
        self.pairs = layer_pairs(params.layer_map, s.num_layers, t.num_layers, method="attention_cls", lowest=1)
        _require_heads("attention_cls", s, t, "attention rows")
        self.tap(
            [*(s.hidden(m) for m, _ in self.pairs), *_attention_paths(s, (m - 1 for m, _ in self.pairs))],
            [*(t.hidden(n) for _, n in self.pairs), *_attention_paths(t, (n - 1 for _, n in self.pairs))],
        )
        self.cls_projections = nn.ModuleList(
            _projection(s.hidden_size, t.hidden_size, self.device, always=False) for _ in self.pairs
        )

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        p = self.params
        mask, s, t = self.features(student, teacher, batch)
        terms: dict[str, torch.Tensor] = {}
        if p.attention_weight > 0:
            rows = [
                attention_kl(s.probabilities(m - 1, mask), t.probabilities(n - 1, mask), mask) for m, n in self.pairs
            ]
            terms["attention"] = p.attention_weight * torch.stack(rows).sum()
        if p.cls_weight > 0:
            cls = [  # [CLS] is the first token of every sequence
                cls_cosine(project(s.hidden(m)[:, 0]), t.hidden(n)[:, 0])
                for project, (m, n) in zip(self.cls_projections, self.pairs, strict=True)
            ]
            terms["cls"] = p.cls_weight * torch.stack(cls).sum()
        return self.logit_terms(terms, student, teacher, batch)
