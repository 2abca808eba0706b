"""Sentences as tensors: vocabularies and encoding.

A sentence of ``n`` words becomes one row of ``x`` ``[n, 1 + C]`` (long): column 0 is the word's id, columns
1..C its first ``C`` characters' ids (0 = padding, 1 = unknown). Labels ``y`` are ``[n]`` tag ids for tagging
and ``[n, 2]`` (head, relation id) for parsing; −1 marks padding and unlabelled sentences. Batches of them
come from :class:`kdlab.data.sentences.loader.SentenceLoader`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from kdlab.data.sentences.readers import Sentence

Task = Literal["tagging", "parsing"]
PAD, UNK = "<pad>", "<unk>"


@dataclass(frozen=True)
class Vocabulary:
    """Word, character, tag and relation inventories (index 0/1 of words and chars: padding/unknown)."""

    words: tuple[str, ...]
    chars: tuple[str, ...]
    tags: tuple[str, ...]
    relations: tuple[str, ...] = ()
    max_chars: int = 16

    @classmethod
    def build(
        cls,
        sentences: Sequence[Sentence],
        task: Task,
        *,
        min_count: int = 2,
        max_chars: int = 16,
        inventory: Sequence[Sentence] = (),
    ) -> Vocabulary:
        """Words seen at least ``min_count`` times (rarer ones become ``<unk>``, which the model learns), every
        character, and every tag/relation — in first-seen order of a sorted listing, so the same sentences give
        the same ids. Tags and relations come from ``inventory`` (default: ``sentences``), the whole training
        split, so that a subset of it keeps the data set's label set."""
        counts = Counter(w for s in sentences for w in s.words)
        words = sorted(w for w, c in counts.items() if c >= min_count)
        chars = sorted({ch for s in sentences for w in s.words for ch in w})
        labelled = inventory or sentences
        tags = sorted({t for s in labelled for t in s.tags}) if task == "tagging" else []
        relations = sorted({r for s in labelled for r in (s.relations or [])}) if task == "parsing" else []
        return cls((PAD, UNK, *words), (PAD, UNK, *chars), tuple(tags), tuple(relations), max_chars)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        return cls(*(tuple(data[k]) for k in ("words", "chars", "tags", "relations")), data.get("max_chars", 16))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.tags if self.tags else self.relations

    def remap(self, other: Vocabulary) -> tuple[torch.Tensor, torch.Tensor]:
        """Index maps from this vocabulary's word/char ids to ``other``'s (unknown there → 1), for batches that do
        not carry the teacher's own encoding (``Batch.teacher_x``)."""

        def table(mine: Sequence[str], theirs: Sequence[str]) -> torch.Tensor:
            where = {w: i for i, w in enumerate(theirs)}
            return torch.tensor([0, 1, *(where.get(w, 1) for w in mine[2:])], dtype=torch.long)

        return table(self.words, other.words), table(self.chars, other.chars)


@dataclass
class Encoded:
    """One split as padded tensors (see the module docstring) plus its sentences."""

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor
    sentences: list[Sentence] = field(default_factory=list)
    teacher_x: torch.Tensor | None = None  # the same sentences in the teacher's vocabulary

    def __len__(self) -> int:
        return len(self.lengths)


def encode_inputs(sentences: Sequence[Sentence], vocab: Vocabulary) -> torch.Tensor:
    """Word and character ids ``[N, n, 1 + C]`` of sentences in ``vocab``."""
    n = max((len(s.words) for s in sentences), default=1)
    words = {w: i for i, w in enumerate(vocab.words)}
    chars = {c: i for i, c in enumerate(vocab.chars)}
    x = torch.zeros(len(sentences), n, 1 + vocab.max_chars, dtype=torch.long)
    for i, s in enumerate(sentences):
        for j, w in enumerate(s.words):
            x[i, j, 0] = words.get(w, 1)
            ids = [chars.get(c, 1) for c in w[: vocab.max_chars]]
            x[i, j, 1 : 1 + len(ids)] = torch.tensor(ids, dtype=torch.long)
    return x


def encode(
    sentences: Sequence[Sentence], vocab: Vocabulary, task: Task, labelled: Sequence[bool] | None = None
) -> Encoded:
    """Sentences → tensors. ``labelled[i] = False`` hides sentence i's labels (−1): unlabelled data."""
    x = encode_inputs(sentences, vocab)
    n = x.shape[1]
    tags = {t: i for i, t in enumerate(vocab.tags)}
    rels = {r: i for i, r in enumerate(vocab.relations)}
    y = torch.full((len(sentences), n, 2) if task == "parsing" else (len(sentences), n), -1, dtype=torch.long)
    for i, s in enumerate(sentences):
        if labelled is not None and not labelled[i]:
            continue
        if task == "tagging":
            y[i, : len(s.tags)] = torch.tensor([tags.get(t, -1) for t in s.tags], dtype=torch.long)
        else:
            y[i, : len(s.words), 0] = torch.tensor(s.heads or [], dtype=torch.long)
            y[i, : len(s.words), 1] = torch.tensor([rels.get(r, -1) for r in s.relations or []], dtype=torch.long)
    lengths = torch.tensor([len(s.words) for s in sentences], dtype=torch.long)
    return Encoded(x, y, lengths, list(sentences))
