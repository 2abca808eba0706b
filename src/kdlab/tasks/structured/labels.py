"""What a structured method needs to know about its models and labels: their kinds, the label loss, and the
(head offset, relation) label set of parsing as sequence labelling (Strzyz et al. 2019)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.data.sentences.encoding import Task
from kdlab.data.sentences.readers import Sentence
from kdlab.losses.structured import token_cross_entropy
from kdlab.models.sequence import BiaffineParser, Tagger, chain_of
from kdlab.ops.crf import negative_log_likelihood

KINDS = ("crf", "maxent", "parser", "labeler")


def kind_of(model: nn.Module, task: Task) -> str:
    """``crf`` / ``maxent`` (taggers), ``parser`` (biaffine) or ``labeler`` (a MaxEnt tagger on parsing data)."""
    if isinstance(model, BiaffineParser):
        if task != "parsing":
            raise ConfigError("The biaffine parser needs parsing data (heads and relations); this data set is tagging.")
        return "parser"
    if isinstance(model, Tagger):
        if task == "parsing":
            if model.head != "maxent":
                raise ConfigError("A sequence-labelling parser is a tagger with head=maxent; got head=crf.")
            return "labeler"
        return model.head
    raise ConfigError(f"{type(model).__name__} is not a kdlab sequence model (tagger or biaffine).")


@dataclass
class LabelTable:
    """The labels of a sequence-labelling parser: each is (head offset, relation id) seen in training trees."""

    offsets: torch.Tensor  # [C]
    relations: torch.Tensor  # [C]
    max_offset: int
    lookup: torch.Tensor  # [2·max_offset + 1, R] → label id, −1 when not a label

    @classmethod
    def build(cls, sentences: Sequence[Sentence], relation_names: Sequence[str]) -> LabelTable:
        ids = {r: i for i, r in enumerate(relation_names)}
        pairs = set()
        for s in sentences:
            for m, (h, r) in enumerate(zip(s.heads or [], s.relations or [], strict=True), 1):
                if r in ids:
                    pairs.add((h - m, ids[r]))
        return cls.from_pairs(sorted(pairs), len(relation_names))

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[int, int]], num_relations: int) -> LabelTable:
        k = max((abs(o) for o, _ in pairs), default=1)
        lookup = torch.full((2 * k + 1, num_relations), -1, dtype=torch.long)
        for i, (o, r) in enumerate(pairs):
            lookup[o + k, r] = i
        offsets = torch.tensor([o for o, _ in pairs], dtype=torch.long)
        return cls(offsets, torch.tensor([r for _, r in pairs], dtype=torch.long), k, lookup)

    def pairs(self) -> list[tuple[int, int]]:
        return list(zip(self.offsets.tolist(), self.relations.tolist(), strict=True))

    def to(self, device: torch.device) -> LabelTable:
        return LabelTable(self.offsets.to(device), self.relations.to(device), self.max_offset, self.lookup.to(device))

    def __len__(self) -> int:
        return len(self.offsets)

    def labels_of(self, tree: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Label ids ``[B, n]`` of heads/relations ``[B, n]`` (−1 where the pair is not a label or unknown)."""
        heads, relations = tree
        offsets = heads - torch.arange(1, heads.shape[1] + 1, device=heads.device)
        inside = (offsets.abs() <= self.max_offset) & (relations >= 0) & (heads >= 0)
        index = (offsets.clamp(-self.max_offset, self.max_offset) + self.max_offset, relations.clamp_min(0))
        return torch.where(inside, self.lookup[index], torch.full_like(heads, -1))

    def decode(self, logits: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each word's best label whose head lies in the sentence → heads, relation ids ``[B, n]`` (the heads
        need not form a tree, as in sequence-labelling parsers)."""
        n = logits.shape[1]
        words = torch.arange(1, n + 1, device=logits.device)
        heads = words[:, None] + self.offsets[None, :]  # [n, C]
        lengths = mask.sum(1)[:, None, None]
        valid = (heads >= 0) & (heads[None] <= lengths) & (heads != words[:, None])
        best = logits.float().masked_fill(~valid, -torch.inf).argmax(-1)  # [B, n]
        return (heads[None].expand(len(best), -1, -1).gather(2, best[..., None]).squeeze(2) * mask,
                self.relations[best] * mask)  # fmt: skip


@dataclass
class SequenceContext:
    """What a structured method is built with."""

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

    def labelled(self, batch: Batch) -> torch.Tensor:
        """``[B]`` 1.0 for sentences with labels, else 0.0."""
        first = batch.y[:, 0] if batch.y.dim() == 2 else batch.y[:, 0, 0]
        return (first >= 0).float()

    def label_loss(self, student: ModelOutput, batch: Batch) -> torch.Tensor:
        """Per-sentence label loss ``[B]`` (0 for unlabelled sentences)."""
        mask, y = batch.mask, batch.y
        assert mask is not None
        labelled = self.labelled(batch).bool()
        if self.student_kind == "crf":
            nll = negative_log_likelihood(chain_of(student, mask), y.clamp_min(0))
            return torch.where(labelled, nll, torch.zeros_like(nll))
        if self.student_kind == "maxent":
            return token_cross_entropy(student.logits, y)
        if self.student_kind == "labeler":
            assert self.table is not None
            return token_cross_entropy(student.logits, self.table.labels_of((y[..., 0], y[..., 1])))
        heads, relations = y[..., 0], y[..., 1]
        known = heads >= 0
        arcs = F.log_softmax(student.logits.float(), -1).gather(2, heads.clamp_min(0)[..., None]).squeeze(2)
        scores = student.structure["relations"]
        at_head = scores.gather(2, heads.clamp_min(0)[..., None, None].expand(-1, -1, 1, scores.shape[-1])).squeeze(2)
        rels = F.log_softmax(at_head.float(), -1).gather(2, relations.clamp_min(0)[..., None]).squeeze(2)
        return -((arcs + rels) * known).sum(1)
