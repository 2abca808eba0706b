"""Batched augmentation as tensor ops: every image of a batch is transformed in one call.

The random parameters are drawn up front (see :class:`kdlab.data.loader.EpochPlan`) so a batch is
fully determined by its plan — the key to bit-identical resume and to caching teacher outputs per view.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, offsets: torch.Tensor, padding: int) -> torch.Tensor:
    """Crop each zero-padded image ``[B, C, H, W]`` at its own ``offsets`` ``[B, 2]`` (dy, dx in 0..2·padding)."""
    if padding <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # [B, H]
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None]
    # advanced indexing gathers [B, H, W, C]; move channels back
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def horizontal_flip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images whose ``flip`` ``[B]`` flag is set."""
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def mixup(x: torch.Tensor, lam: float | torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Zhang et al. 2018: ``x̃ = λ·x + (1 − λ)·x[perm]`` with one λ for the batch."""
    return x * lam + x[perm] * (1.0 - lam)
