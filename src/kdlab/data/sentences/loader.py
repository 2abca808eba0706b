"""Batches of encoded sentences for the engine, cut to the longest sentence of each batch."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from kdlab.core.batch import Batch
from kdlab.data.sentences.encoding import Encoded


@dataclass
class SentenceExtras:
    """What a batch of sentences adds (its :attr:`Batch.extras <kdlab.core.batch.Batch>`): ``mask`` ``[B, n]``, the
    word positions that exist; ``teacher_x``, the same sentences in the teacher's own vocabulary when it has one."""

    mask: torch.Tensor
    teacher_x: torch.Tensor | None = None


class SentenceLoader:
    """Batches of sentences on ``device``, cut to the longest sentence of each batch.

    With ``shuffle`` the order of an epoch comes from a generator seeded by ``(seed, epoch)``, so batch k of
    epoch e is the same whether or not the run was resumed (the engine's contract).
    """

    def __init__(
        self,
        data: Encoded,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        self.data, self.batch_size, self.shuffle, self.seed = data, batch_size, shuffle, seed
        self.x, self.y, self.lengths = data.x.to(device), data.y.to(device), data.lengths.to(device)
        self.teacher_x = None if data.teacher_x is None else data.teacher_x.to(device)

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.data), generator=g) if self.shuffle else torch.arange(len(self.data))
        on_device = order.to(self.x.device)
        for k in range(start, len(self)):
            part = slice(k * self.batch_size, (k + 1) * self.batch_size)
            sel, n = on_device[part], int(self.data.lengths[order[part]].max())  # lengths read on the host: no sync
            x, y = self.x[sel, :n], self.y[sel, :n]
            teacher_x = None if self.teacher_x is None else self.teacher_x[sel, :n]
            yield Batch(x=x, y=y, index=sel, extras=SentenceExtras(mask=x[..., 0] > 0, teacher_x=teacher_x))
