"""Every random draw of one training epoch, made at once from a generator seeded by ``(seed, epoch)``.

Drawing the order, crop offsets, flips, rotations, jitter factors, mixup/cutmix pairs and noise flags up front is
what makes a resumed run replay exactly the batches of an uninterrupted one (see :mod:`kdlab.data.loader`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from kdlab.data.policies import Augment


@dataclass
class EpochPlan:
    """Every random draw of one epoch; per-example tensors are indexed by sample index, per-batch ones
    by batch number."""

    order: torch.Tensor
    offsets: torch.Tensor | None
    flips: torch.Tensor | None
    lambdas: list[float]
    perms: torch.Tensor | None
    vflips: torch.Tensor | None = None
    angles: torch.Tensor | None = None
    brightness: torch.Tensor | None = None
    contrast: torch.Tensor | None = None
    centres: list[tuple[float, float]] | None = None  # cutmix box centres
    noisy: torch.Tensor | None = None
    noise_seed: int = 0
    views: torch.Tensor | None = None  # per-example view number, when the views are replayed from a ViewBank


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's draws."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def draw_plan(
    g: torch.Generator,
    order: torch.Tensor,
    augment: Augment,
    *,
    batches: int,
    batch_size: int,
    device: torch.device,
) -> EpochPlan:
    """The augmentation draws of an epoch visiting ``order`` (n samples) in ``batches`` batches of ``batch_size``,
    continuing the stream of ``g`` (which drew the order)."""
    n, aug = len(order), augment
    offsets = torch.randint(0, 2 * aug.crop + 1, (n, 2), generator=g) if aug.crop else None
    flips = torch.rand(n, generator=g) < 0.5 if aug.flip else None
    lambdas, perms = [], None
    if aug.mixup > 0:
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=g)))
        lambdas = rng.beta(aug.mixup, aug.mixup, size=batches).tolist()
        perms = torch.cat([torch.randperm(batch_size, generator=g) for _ in range(batches)])
    # later policies draw after the original three, so crop/flip/mixup epochs stay what they were

    def factors(strength: float) -> torch.Tensor | None:
        return 1.0 + strength * (2 * torch.rand(n, generator=g) - 1) if strength > 0 else None

    vflips = torch.rand(n, generator=g) < 0.5 if aug.vflip else None
    angles = aug.rotation * (2 * torch.rand(n, generator=g) - 1) if aug.rotation > 0 else None
    brightness, contrast = factors(aug.brightness), factors(aug.contrast)
    if brightness is not None or contrast is not None:
        brightness = torch.ones(n) if brightness is None else brightness
        contrast = torch.ones(n) if contrast is None else contrast
    centres = None
    if aug.cutmix > 0:
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=g)))
        lambdas = rng.beta(aug.cutmix, aug.cutmix, size=batches).tolist()
        centres = [tuple(c) for c in rng.random((batches, 2)).tolist()]
        perms = torch.cat([torch.randperm(batch_size, generator=g) for _ in range(batches)])
    noisy = torch.rand(n, generator=g) < aug.noise if aug.noise > 0 else None
    noise_seed = int(torch.randint(2**62, (1,), generator=g)) if aug.noise > 0 else 0

    def dev(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(device)

    return EpochPlan(
        order.to(device),
        dev(offsets),
        dev(flips),
        lambdas,
        dev(perms),
        dev(vflips),
        dev(angles),
        dev(brightness),
        dev(contrast),
        centres,
        dev(noisy),
        noise_seed,
    )
