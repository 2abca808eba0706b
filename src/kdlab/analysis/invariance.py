"""Does a student inherit its teacher's invariances? (Ojha et al. 2023, §4.3)

For each image two views are drawn — the image and its colour-jittered copy, or two random crops, or two
random shifts — with random parameters fixed per image by ``seed`` so every model sees the same pairs. A
model's invariance score is the share of images whose two views get the same prediction.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.core.modes import eval_mode
from kdlab.data.augment import jitter

Kind = Literal["jitter", "crop", "shift"]


def _window(
    x: torch.Tensor, scale_h: torch.Tensor, scale_w: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor
) -> torch.Tensor:
    """The window of relative size (scale_h, scale_w) centred at (cy, cx) in [−1, 1] coordinates, resized to
    the full image (bilinear; zeros outside the image)."""
    zero = torch.zeros_like(cx)
    theta = torch.stack([torch.stack([scale_w, zero, cx], 1), torch.stack([zero, scale_h, cy], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def view_pair(x: torch.Tensor, kind: Kind, strength: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of each image of ``x`` ``[B, C, H, W]`` (pixels in [0, 1]).

    ``jitter``: the image and a copy with brightness and contrast (and, for RGB, saturation) factors uniform
    in [1 − s, 1 + s];
    ``crop``: two crops each covering a fraction s of the area (aspect ratio log-uniform in [3/4, 4/3]),
    resized back; ``shift``: two translations by up to s of the side in each direction (zeros enter)."""
    g = torch.Generator().manual_seed(seed)
    b = len(x)

    def uniform(low: float, high: float) -> torch.Tensor:
        return (low + (high - low) * torch.rand(b, generator=g)).to(x.device)

    if kind == "jitter":
        jittered = jitter(x, uniform(1 - strength, 1 + strength), uniform(1 - strength, 1 + strength))
        if x.shape[1] == 3:  # colour images also get a saturation factor
            grey = jittered.mean(1, keepdim=True)
            saturation = uniform(1 - strength, 1 + strength)[:, None, None, None]
            jittered = (grey + saturation * (jittered - grey)).clamp(0.0, 1.0)
        return x, jittered
    if kind not in ("crop", "shift"):
        raise ValueError(f"unknown invariance kind {kind!r}; valid: jitter, crop, shift")
    views = []
    for _ in range(2):
        if kind == "crop":
            if not 0.0 < strength <= 1.0:
                raise ValueError(f"a crop covers a fraction of the image in (0, 1]; got {strength}")
            ratio = torch.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
            sh = (strength / ratio).sqrt().clamp(max=1.0)  # keep the area s when a side would leave the image
            sw = (strength / sh).clamp(max=1.0)
            sh = (strength / sw).clamp(max=1.0)
            cy, cx = uniform(-1, 1) * (1 - sh), uniform(-1, 1) * (1 - sw)
        else:
            sh = sw = torch.ones(b, device=x.device)
            cy, cx = 2 * strength * uniform(-1, 1), 2 * strength * uniform(-1, 1)
        views.append(_window(x, sh, sw, cy, cx))
    return views[0], views[1]


@torch.no_grad()
def invariance_matches(
    model: nn.Module, x: torch.Tensor, kind: Kind, strength: float, seed: int = 0, batch_size: int = 500
) -> torch.Tensor:
    """``[N]`` bool: the two views of each image (see :func:`view_pair`) get the same top-1 prediction."""
    same = []
    with eval_mode(model):
        for s in range(0, len(x), batch_size):
            a, b = view_pair(x[s : s + batch_size], kind, strength, seed + s)
            same.append(model(a).argmax(-1) == model(b).argmax(-1))
    return torch.cat(same)


def invariance_agreement(
    model: nn.Module, x: torch.Tensor, kind: Kind, strength: float, seed: int = 0, batch_size: int = 500
) -> float:
    """% of images whose two views get the same top-1 prediction from ``model`` (:func:`invariance_matches`)."""
    return 100.0 * float(invariance_matches(model, x, kind, strength, seed, batch_size).double().mean())
