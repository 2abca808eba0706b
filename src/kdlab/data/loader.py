"""Batches straight from tensors that live on the training device.

The whole data set stays on the device as uint8 (four times smaller than float32) and is converted
per batch. Each epoch's randomness — order, crop offsets, flips, mixup — comes from a generator
seeded by ``(seed, epoch)``, so batch k of epoch e is the same whether or not the run was resumed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from kdlab.data.augment import horizontal_flip, mixup, random_crop


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation: random crop after zero ``crop`` padding, horizontal ``flip``,
    ``mixup`` with λ ~ Beta(α, α) (α = 0: off). Labels are mixed by the label loss, not here."""

    crop: int = 0
    flip: bool = False
    mixup: float = 0.0

    @property
    def active(self) -> bool:
        return self.crop > 0 or self.flip or self.mixup > 0


@dataclass
class Batch:
    """One batch: pixels ``x`` in [0, 1], labels ``y`` (−1 = unlabelled), ``index`` = sample indices
    into the split. With mixup, ``mix_perm``/``mix_lambda`` say how the images were mixed."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    mix_perm: torch.Tensor | None = None
    mix_lambda: float | None = None

    def __len__(self) -> int:
        return self.x.shape[0]


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels → float32 in [0, 1]; float inputs pass through."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


@dataclass
class EpochPlan:
    order: torch.Tensor
    offsets: torch.Tensor | None
    flips: torch.Tensor | None
    lambdas: list[float]
    perms: torch.Tensor | None


class TensorLoader:
    """Iterates ``(x, y)`` tensors in batches on ``device``.

    ``shuffle``/``augment`` apply to training; evaluation loaders keep the order and the pixels.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        augment: Augment | None = None,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.augment = augment or Augment()
        self.device = torch.device(device)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def plan(self, epoch: int) -> EpochPlan:
        """Every random draw of ``epoch``, made at once from a generator seeded by (seed, epoch)."""
        n, aug = len(self.x), self.augment
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        offsets = torch.randint(0, 2 * aug.crop + 1, (n, 2), generator=g) if aug.crop else None
        flips = torch.rand(n, generator=g) < 0.5 if aug.flip else None
        lambdas, perms = [], None
        if aug.mixup > 0:
            rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=g)))
            lambdas = rng.beta(aug.mixup, aug.mixup, size=len(self)).tolist()
            perms = torch.cat([torch.randperm(self.batch_size, generator=g) for _ in range(len(self))])
        to = self.device
        return EpochPlan(
            order.to(to),
            None if offsets is None else offsets.to(to),
            None if flips is None else flips.to(to),
            lambdas,
            None if perms is None else perms.to(to),
        )

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch`` from batch number ``start`` on."""
        plan, bs = self.plan(epoch), self.batch_size
        for k in range(start, len(self)):
            sel = plan.order[k * bs : (k + 1) * bs]
            x = to_float(self.x[sel])
            if plan.offsets is not None:
                x = random_crop(x, plan.offsets[sel], self.augment.crop)
            if plan.flips is not None:
                x = horizontal_flip(x, plan.flips[sel])
            batch = Batch(x=x, y=self.y[sel], index=sel)
            if plan.perms is not None:
                perm = plan.perms[k * bs : (k + 1) * bs]
                perm = perm[perm < len(sel)]  # a permutation of the (possibly short) last batch
                batch.mix_perm, batch.mix_lambda = perm, plan.lambdas[k]
                batch.x = mixup(x, plan.lambdas[k], perm)
            yield batch
