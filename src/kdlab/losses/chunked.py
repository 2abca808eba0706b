"""Losses over the rows of a batch computed chunk by chunk, so that the ``[rows × vocabulary]`` logits of a language
model never exist at once (the idea of Liger's fused linear cross-entropy, without a custom kernel)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint

RowSums = Callable[[int, int], tuple[torch.Tensor, ...]]


def chunked_sums(rows: int, chunk_size: int | None, sums: RowSums) -> tuple[torch.Tensor, ...]:
    """``Σ_chunks sums(start, end)`` over ``[start, end)`` chunks of ``chunk_size`` rows (None: one chunk of all).

    With a chunk size each chunk is checkpointed: what ``sums`` computes on the way (the chunk's logits from the
    hidden states and the output head, their softmax) is dropped after the forward pass and recomputed in the
    backward pass, one chunk at a time — the peak holds one chunk's ``[chunk × V]`` tensors, not the batch's. Values
    and gradients equal the unchunked ones (up to the order of float additions).

    Args:
        rows (int): the number of rows (trained positions).
        chunk_size (int | None): rows per chunk, ≥ 1; None computes all rows at once, without checkpointing.
        sums (RowSums): ``(start, end) -> (sum_1, sum_2, ...)`` scalar sums over rows ``start:end``.

    Returns:
        tuple[torch.Tensor, ...]: the totals, one per sum.
    """
    if chunk_size is None or rows <= chunk_size:
        return sums(0, rows)
    totals: tuple[torch.Tensor, ...] | None = None
    for start in range(0, rows, chunk_size):
        part = checkpoint(sums, start, min(start + chunk_size, rows), use_reentrant=False)
        totals = part if totals is None else tuple(a + b for a, b in zip(totals, part, strict=True))
    assert totals is not None
    return totals
