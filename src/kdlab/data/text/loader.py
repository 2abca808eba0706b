"""Batches of tokenised texts for the engine, each cut to its longest text (dynamic padding)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.data.text.tokens import Tokens


@dataclass
class TextExtras:
    """What a batch of texts adds (its :attr:`Batch.extras <kdlab.core.batch.Batch>`): ``teacher_x``, the same
    texts in the teacher's own tokenisation (``input_ids``, ``attention_mask``, ...) when the teacher's tokenizer
    differs from the student's, else None (the teacher reads ``Batch.x``)."""

    teacher_x: Mapping[str, torch.Tensor] | None = None


class _Inputs:
    """One tokenisation of a split held on the device, with its lengths kept on the host to cut batches."""

    def __init__(self, tokens: Tokens, device: torch.device) -> None:
        self.lengths = tokens.lengths.cpu()
        width = tokens.input_ids.shape[1]
        mask = torch.arange(width)[None, :] < self.lengths[:, None]
        self.tensors = {"input_ids": tokens.input_ids.to(device), "attention_mask": mask.long().to(device)}
        if tokens.token_type_ids is not None:
            self.tensors["token_type_ids"] = tokens.token_type_ids.to(device)

    def take(self, rows: torch.Tensor, selected: torch.Tensor) -> dict[str, torch.Tensor]:
        """The examples ``rows`` (on the host; ``selected``, the same on the device), cut to the longest one."""
        width = int(self.lengths[rows].max())  # read on the host: no wait for the device
        return {name: tensor[selected, :width] for name, tensor in self.tensors.items()}


class TextLoader:
    """Batches of ``batch_size`` texts on ``device``: ``x`` = ``{"input_ids", "attention_mask"}`` (and
    ``token_type_ids`` when the tokens have them) ``[B, T]`` with ``T`` the batch's longest text, ``y`` the class
    ids ``[B]``, ``index`` the examples' indices in the split, ``extras`` a :class:`TextExtras`.

    With ``shuffle`` the order of an epoch comes from a generator seeded by ``(seed, epoch)``, so batch k of
    epoch e is the same whether or not the run was resumed (the engine's contract); ``epoch(e, start=k)`` begins
    at batch k. ``teacher_tokens`` are the same texts in the teacher's tokenizer, when it has its own.
    """

    def __init__(
        self,
        tokens: Tokens,
        labels: torch.Tensor,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        seed: int = 0,
        teacher_tokens: Tokens | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"The batch size must be a positive integer, not {batch_size!r}.")
        teacher_count = len(tokens) if teacher_tokens is None else len(teacher_tokens)
        for what, count in (("labels", len(labels)), ("teacher's tokens", teacher_count)):
            if count != len(tokens):
                raise ConfigError(f"{len(tokens)} tokenised texts but {count} {what}; they must be the same texts.")
        self.batch_size, self.shuffle, self.seed, self.size = batch_size, shuffle, seed, len(tokens)
        self.device = torch.device(device)
        self.student = _Inputs(tokens, self.device)
        self.teacher = None if teacher_tokens is None else _Inputs(teacher_tokens, self.device)
        self.y = labels.to(self.device)

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch[TextExtras]]:
        """The batches of epoch ``epoch`` from batch ``start`` on."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.size, generator=g) if self.shuffle else torch.arange(self.size)
        on_device = order.to(self.device)
        for k in range(start, len(self)):
            part = slice(k * self.batch_size, (k + 1) * self.batch_size)
            rows, selected = order[part], on_device[part]
            teacher_x = None if self.teacher is None else self.teacher.take(rows, selected)
            yield Batch(x=self.student.take(rows, selected), y=self.y[selected], index=selected,
                        extras=TextExtras(teacher_x=teacher_x))  # fmt: skip
