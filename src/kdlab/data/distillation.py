"""The distillation set: labelled training images plus unlabelled sources, each with its own temperature.

Stanton et al. (2021) distil on the training set and on extra data whose labels are never used — the
rest of a split, another data set (digits upsampled, MNIST), noise — and gnosis gives each source its
own temperature (its GAN samples silently got τ = 1 while real data got τ = 4). Here every source's τ
is explicit: a per-example temperature travels with each batch, ``NaN`` meaning "the method's τ".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from kdlab.data.split import stratified_subset


@dataclass
class ExtraSource:
    """Unlabelled distillation data from the training split of data set ``name`` (its labels are dropped):
    ``size`` examples (all when None), distilled at ``temperature`` (None: the method's τ)."""

    name: str
    size: int | None = None
    temperature: float | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


def conform(x: torch.Tensor, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """uint8 images ``[N, C', H', W']`` → ``[N, channels, *size]``: bilinear resize, colour → grey by the
    channel mean, grey → colour by repetition."""
    if x.shape[1] != channels:
        if channels == 1:
            x = x.float().mean(1, keepdim=True).round().to(torch.uint8)
        elif x.shape[1] == 1:
            x = x.expand(-1, channels, -1, -1)
        else:
            raise ValueError(f"cannot map {x.shape[1]}-channel images to {channels} channels")
    if tuple(x.shape[-2:]) != tuple(size):
        resized = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
        x = resized.round().clamp(0, 255).to(torch.uint8)
    return x.contiguous()


def unlabel_all_but(y: torch.Tensor, labelled: int, seed: int) -> torch.Tensor:
    """Labels ``y`` with all but a stratified subset of ``labelled`` examples set to −1 (unlabelled)."""
    out = torch.full_like(y, -1)
    if labelled == 0:
        return out
    keep = stratified_subset(y, labelled, seed)
    out[keep] = y[keep]
    return out


def per_example_temperature(sizes: list[int], temperatures: list[float | None]) -> torch.Tensor | None:
    """``[Σ sizes]`` temperatures, ``NaN`` where a source uses the method's τ; None when every source does."""
    if all(t is None for t in temperatures):
        return None
    parts = [torch.full((n,), float("nan") if t is None else t) for n, t in zip(sizes, temperatures, strict=True)]
    return torch.cat(parts)


def resolve_temperature(batch_temperature: torch.Tensor | None, default: float) -> float | torch.Tensor:
    """The temperature a loss should use: ``default`` where the batch's source says NaN (or has none);
    per-example temperatures come back as ``[B, 1]``, the shape the logit losses broadcast."""
    if batch_temperature is None:
        return default
    tau = torch.where(torch.isnan(batch_temperature), torch.full_like(batch_temperature, default), batch_temperature)
    return tau.view(-1, 1)
