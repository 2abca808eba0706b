"""Top-k compression of teacher logits that keeps the tail's probability mass as one bucket.

Storing only the k largest logits (as FKD stores soft labels) biases a KD loss unless the rest of the
distribution is accounted for: the missing classes would get probability 0, or be renormalised away. Here the
remaining c − k classes are kept as one bucket: their log-sum-exp ``t = log Σ_{j∉top-k} exp(z_j)`` is stored, and
on reading each tail class gets the logit ``t − log(c − k)``. Then, at τ = 1, the softmax of the restored logits
gives every top-k class exactly its probability and the tail exactly its total mass (spread evenly over its
classes). At τ ≠ 1 the tail is tempered as if it were even, which is the one approximation left.
"""

from __future__ import annotations

import math

import torch


def compress_top_k(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``logits`` ``[..., c]`` → (top-k values ``[..., k]`` float32, their class indices ``[..., k]`` int32,
    the tail's log-sum-exp ``[...]`` float32; −inf when k = c)."""
    c = logits.shape[-1]
    if not 1 <= k <= c:
        raise ValueError(f"top_k must lie in 1..{c} (the number of classes); got {k}")
    logits = logits.float()
    values, indices = logits.topk(k, dim=-1)
    tail = logits.scatter(-1, indices, float("-inf")).logsumexp(dim=-1)
    return values, indices.int(), tail


def restore_top_k(values: torch.Tensor, indices: torch.Tensor, tail: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits ``[..., c]`` from :func:`compress_top_k`'s parts: the top-k classes exact, each of the c − k others
    at ``tail − log(c − k)`` so that together they hold the tail's mass."""
    rest = num_classes - values.shape[-1]
    fill = (tail - math.log(rest)) if rest > 0 else tail
    out = fill.float().unsqueeze(-1).expand(*values.shape[:-1], num_classes).clone()
    return out.scatter_(-1, indices.long(), values.float())
