"""The loss of a tagger or parser with its gold labels, per kind of model (the label term of every structured
method and of ``ce``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.core.batch import Batch
from kdlab.core.outputs import ModelOutput
from kdlab.data.sentences.labels import LabelTable
from kdlab.data.sentences.loader import SentenceExtras
from kdlab.losses.structured import token_cross_entropy
from kdlab.methods.base import LabelLoss
from kdlab.models.sequence import chain_of
from kdlab.ops.crf import negative_log_likelihood


def labelled(batch: Batch) -> torch.Tensor:
    """``[B]`` 1.0 for sentences with labels, else 0.0."""
    first = batch.y[:, 0] if batch.y.dim() == 2 else batch.y[:, 0, 0]
    return (first >= 0).float()


def per_sentence(kind: str, table: LabelTable | None, student: ModelOutput, batch: Batch) -> torch.Tensor:
    """Per-sentence label loss ``[B]`` (0 for unlabelled sentences): CRF NLL, token cross-entropy (MaxEnt tagger;
    a labeller's (offset, relation) labels), or the parser's head + relation cross-entropy."""
    assert isinstance(batch.extras, SentenceExtras)
    mask, y = batch.extras.mask, batch.y
    if kind == "crf":
        nll = negative_log_likelihood(chain_of(student, mask), y.clamp_min(0))
        return torch.where(labelled(batch).bool(), nll, torch.zeros_like(nll))
    if kind == "maxent":
        return token_cross_entropy(student.logits, y)
    if kind == "labeler":
        assert table is not None
        return token_cross_entropy(student.logits, table.labels_of((y[..., 0], y[..., 1])))
    heads, relations = y[..., 0], y[..., 1]
    known = heads >= 0
    arcs = F.log_softmax(student.logits.float(), -1).gather(2, heads.clamp_min(0)[..., None]).squeeze(2)
    scores = student.structure["relations"]
    at_head = scores.gather(2, heads.clamp_min(0)[..., None, None].expand(-1, -1, 1, scores.shape[-1])).squeeze(2)
    rels = F.log_softmax(at_head.float(), -1).gather(2, relations.clamp_min(0)[..., None]).squeeze(2)
    return -((arcs + rels) * known).sum(1)


def sentence_label_loss(kind: str, table: LabelTable | None) -> LabelLoss:
    """The label loss of a ``kind`` student: its per-sentence loss summed over tokens, averaged over the labelled
    sentences of the batch (0 when none is labelled). It takes no label smoothing."""

    def loss(student: ModelOutput, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
        weights = labelled(batch)
        return (per_sentence(kind, table, student, batch) * weights).sum() / weights.sum().clamp_min(1)

    return loss
