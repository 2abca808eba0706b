"""The labels of parsing as sequence labelling (Strzyz et al. 2019): each word's (head offset, relation) pair, from
the set of pairs seen in the training trees."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from kdlab.data.sentences.readers import Sentence


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
