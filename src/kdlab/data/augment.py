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


def vertical_flip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Turn upside down the images whose ``flip`` ``[B]`` flag is set."""
    return torch.where(flip[:, None, None, None], x.flip(-2), x)


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image ``[B, C, H, W]`` about its centre by its own angle ``degrees`` ``[B]`` (bilinear,
    zeros outside the image), like torchvision's ``RandomRotation``."""
    theta = torch.deg2rad(degrees.to(x.dtype))
    cos, sin, zero = theta.cos(), theta.sin(), torch.zeros_like(theta)
    affine = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # [B, 2, 3]
    grid = F.affine_grid(affine, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    """Brightness then contrast, per image: ``x·b``, then ``(x − m)·c + m`` with ``m`` the image's mean grey
    level; factors ``[B]``; the result is clipped to [0, 1] like torchvision's ``ColorJitter``."""
    x = (x * brightness[:, None, None, None]).clamp(0.0, 1.0)
    grey = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - grey) * contrast[:, None, None, None] + grey).clamp(0.0, 1.0)


Box = tuple[int, int, int, int]  # top, left, height, width


def cutmix(x: torch.Tensor, box: Box, perm: torch.Tensor) -> torch.Tensor:
    """Yun et al. 2019: paste the region ``box = (top, left, height, width)`` of ``x[perm]`` into ``x``."""
    top, left, h, w = box
    out = x.clone()
    out[:, :, top : top + h, left : left + w] = x[perm][:, :, top : top + h, left : left + w]
    return out


def cutmix_box(lam: float, height: int, width: int, centre: tuple[float, float]) -> tuple[Box, float]:
    """The box of area ≈ ``(1 − lam)·H·W`` centred at ``centre`` (fractions of H and W), clipped to the image,
    and the λ that the clipped box really leaves (the share of pixels kept from ``x``)."""
    cut = (1.0 - lam) ** 0.5
    ch, cw = round(height * cut), round(width * cut)
    cy, cx = round(centre[0] * height), round(centre[1] * width)
    top, bottom = max(cy - ch // 2, 0), min(cy + ch - ch // 2, height)
    left, right = max(cx - cw // 2, 0), min(cx + cw - cw // 2, width)
    kept = 1.0 - (bottom - top) * (right - left) / (height * width)
    return (top, left, bottom - top, right - left), kept
