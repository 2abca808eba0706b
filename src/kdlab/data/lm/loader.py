"""Batches of token sequences for the engine: each cut to its longest sequence, labelled for next-token training,
and grouped into gradient-accumulation windows.

A window of ``batch_size`` sequences is one optimiser step. With ``micro_batch_size`` it comes as a list of
micro-batches (each cut to its own longest sequence), every one carrying the window's count of trained tokens, so
that the losses — summed over tokens and divided by that count (:func:`kdlab.losses.reduce_tokens`) — add up over
the micro-batches to exactly the loss of the whole window.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.data.lm.cross import CrossTokens
from kdlab.data.lm.encode import LMTokens
from kdlab.data.loader import part_bounds
from kdlab.losses.tokens import IGNORE_INDEX


@dataclass
class LMExtras:
    """What a batch of sequences adds (its :attr:`Batch.extras <kdlab.core.batch.Batch>`).

    ``num_tokens``: the next-token targets of the whole accumulation window (an int read from the host lengths, or
    a device tensor once generation has replaced completions); ``prompt_lengths`` ``[B]`` on the device and
    ``prompt_width`` (their maximum, a host int) for generation; ``lengths`` ``[B]`` on the host; ``targets`` the
    next-token targets of this batch alone (a host int). For a teacher with its own tokenizer (cross-tokenizer
    distillation, :mod:`kdlab.data.lm.cross`): ``teacher_x``, the same texts in its tokens; ``aligned`` =
    (student positions, teacher positions, mask) ``[B, M]``; ``num_aligned``, the window's aligned positions.
    """

    num_tokens: int | torch.Tensor
    prompt_lengths: torch.Tensor
    prompt_width: int
    lengths: torch.Tensor
    targets: int = 0
    teacher_x: dict[str, torch.Tensor] | None = None
    aligned: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    num_aligned: int = 0


def labels_of(input_ids: torch.Tensor, lengths: torch.Tensor, prompt_lengths: torch.Tensor) -> torch.Tensor:
    """``[N, W]`` labels: the token ids where they are trained (from the prompt's end to the sequence's end),
    ``IGNORE_INDEX`` at the prompt and the padding."""
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
    trained = (positions >= prompt_lengths[:, None]) & (positions < lengths[:, None])
    return torch.where(trained, input_ids, IGNORE_INDEX)


def keep_logits(
    inputs: dict[str, torch.Tensor], labels: torch.Tensor, start: int, *, hidden: bool = False
) -> tuple[dict[str, Any], torch.Tensor]:
    """Ask the models for logits at positions ``start`` and later only (Hugging Face ``logits_to_keep``) and cut the
    labels to the same positions, so that the next-token alignment of the losses still holds: no position before
    ``start`` predicts a trained token (``start`` = the shortest prompt − 1), and the ``[tokens × vocabulary]``
    logits of the prompts are never computed. With ``hidden`` the models compute no logits at all and return their
    hidden states instead (``output_hidden_states``): the chunked losses make the logits themselves."""
    if hidden:
        none = torch.empty(0, dtype=torch.long, device=labels.device)
        return {**inputs, "logits_to_keep": none, "output_hidden_states": True}, labels  # type: ignore[dict-item]
    if start <= 0:
        return inputs, labels
    return {**inputs, "logits_to_keep": labels.shape[1] - start}, labels[:, start:]


class LMLoader:
    """Windows of ``batch_size`` sequences on ``device``: a :class:`~kdlab.core.batch.Batch` (or, with
    ``micro_batch_size``, a list of them) with ``x`` = ``{"input_ids", "attention_mask"}`` ``[B, T]``, ``y`` the
    labels ``[B, T]`` (``IGNORE_INDEX`` where not trained), ``index`` the sequences' indices, ``extras`` an
    :class:`LMExtras`. An epoch's order comes from ``(seed, epoch)``, so a resumed run replays the same windows.
    With ``trim_logits`` (for models that take ``logits_to_keep``) the prompts' logits are not computed and ``y``
    covers the remaining positions only; with ``hidden_states`` no logits are computed and the models return their
    hidden states (:func:`keep_logits`).
    """

    def __init__(
        self,
        tokens: LMTokens,
        batch_size: int,
        *,
        micro_batch_size: int | None = None,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        seed: int = 0,
        trim_logits: bool = False,
        hidden_states: bool = False,
        cross: CrossTokens | None = None,
    ) -> None:
        for name, value in (("batch_size", batch_size), ("micro_batch_size", micro_batch_size or 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"data.{name} must be a positive integer; got {value!r}.")
        self.batch_size, self.micro = batch_size, min(micro_batch_size or batch_size, batch_size)
        self.shuffle, self.seed, self.size, self.trim_logits = shuffle, seed, len(tokens), trim_logits
        self.hidden_states = hidden_states
        self.part, self.parts = 0, 1
        self.device = torch.device(device)
        self.lengths, self.prompts = tokens.lengths.cpu(), tokens.prompt_lengths.cpu()
        self.targets = (self.lengths - self.prompts.clamp(min=1)).clamp(min=0)  # next-token targets per sequence
        ids = tokens.input_ids.to(self.device)
        mask = torch.arange(ids.shape[1])[None, :] < self.lengths[:, None]
        self.ids, self.mask = ids, mask.long().to(self.device)
        self.labels = labels_of(ids, self.lengths.to(self.device), self.prompts.to(self.device))
        self.prompt_lengths = self.prompts.to(self.device)
        self.cross = None if cross is None else _CrossTables(cross, self.device)

    def __len__(self) -> int:
        if self.parts > 1:  # a last window too small to split evenly is dropped by every process
            return self.size // self.batch_size
        return math.ceil(self.size / self.batch_size)

    def shard(self, part: int, parts: int) -> LMLoader:
        """This loader as process ``part`` of ``parts`` sees it (data-parallel training): every process draws the
        same order, cuts each window of ``batch_size`` sequences into ``parts`` equal contiguous pieces and takes
        piece ``part``; each piece's micro-batches carry the whole window's token count, so that every process's
        loss is its share of the window's (``Batch.global_share``). Every process thus runs the same number of
        forward and backward passes (which DDP and FSDP need); a last, smaller window is dropped."""
        if self.batch_size % parts:
            raise ConfigError(
                f"data.batch_size={self.batch_size} is the global batch of {parts} processes; it must be a multiple "
                f"of {parts} so that every process gets as many sequences (and micro-batches) as the others."
            )
        out = copy.copy(self)
        out.part, out.parts = part, parts
        return out

    def _batch(
        self, rows: torch.Tensor, selected: torch.Tensor, num_tokens: int, num_aligned: int = 0
    ) -> Batch[LMExtras]:
        """One (micro-)batch of the sequences ``rows`` (host) / ``selected`` (device) of a window of ``num_tokens``
        trained tokens (and ``num_aligned`` aligned positions)."""
        width = int(self.lengths[rows].max())  # host values: no wait for the device
        extras = LMExtras(num_tokens, self.prompt_lengths[selected], int(self.prompts[rows].max()), self.lengths[rows],
                          int(self.targets[rows].sum()))  # fmt: skip
        if self.cross is not None:
            self.cross.fill(extras, rows, selected, num_aligned)
        x: dict[str, Any] = {"input_ids": self.ids[selected, :width], "attention_mask": self.mask[selected, :width]}
        y = self.labels[selected, :width]
        if self.trim_logits or self.hidden_states:
            x, y = keep_logits(x, y, int(self.prompts[rows].min()) - 1, hidden=self.hidden_states)
        return Batch(x=x, y=y, index=selected, extras=extras, global_share=self.parts > 1)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch[LMExtras] | list[Batch[LMExtras]]]:
        """The windows of epoch ``epoch`` from window ``start`` on."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.size, generator=g) if self.shuffle else torch.arange(self.size)
        on_device = order.to(self.device)
        for k in range(start, len(self)):
            part = slice(k * self.batch_size, (k + 1) * self.batch_size)
            rows, selected = order[part], on_device[part]
            count = int(self.targets[rows].sum())  # over the whole window, every process's piece included
            aligned = int(self.cross.aligned[rows].sum()) if self.cross is not None else 0
            if self.parts > 1:
                lo, hi = part_bounds(len(rows), self.part, self.parts)
                rows, selected = rows[lo:hi], selected[lo:hi]
            micro = [self._batch(rows[i : i + self.micro], selected[i : i + self.micro], count, aligned)
                     for i in range(0, len(rows), self.micro)]  # fmt: skip
            yield micro[0] if len(micro) == 1 else micro


class _CrossTables:
    """A split's teacher view (:class:`~kdlab.data.lm.cross.CrossTokens`) on the device, cut per batch."""

    def __init__(self, cross: CrossTokens, device: torch.device) -> None:
        self.lengths, self.aligned = cross.teacher.lengths.cpu(), cross.aligned.cpu()
        ids = cross.teacher.input_ids
        mask = torch.arange(ids.shape[1])[None, :] < self.lengths[:, None]
        self.ids, self.mask = ids.to(device), mask.long().to(device)
        self.student, self.teacher = cross.student_positions.to(device), cross.teacher_positions.to(device)
        self.valid = (torch.arange(self.student.shape[1])[None, :] < self.aligned[:, None]).to(device)

    def fill(self, extras: LMExtras, rows: torch.Tensor, selected: torch.Tensor, num_aligned: int) -> None:
        width, m = max(int(self.lengths[rows].max()), 1), max(int(self.aligned[rows].max()), 1)
        extras.teacher_x = {"input_ids": self.ids[selected, :width], "attention_mask": self.mask[selected, :width]}
        extras.aligned = (self.student[selected, :m], self.teacher[selected, :m], self.valid[selected, :m])
        extras.num_aligned = num_aligned
