"""Batches straight from tensors that live on the training device.

The whole data set stays on the device as uint8 (four times smaller than float32) and is converted
per batch. Each epoch's randomness — order, crop offsets, flips, mixup — comes from a generator
seeded by ``(seed, epoch)``, so batch k of epoch e is the same whether or not the run was resumed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.data.augment import cutmix, cutmix_box, horizontal_flip, jitter, mixup, random_crop, rotate, vertical_flip
from kdlab.data.plans import EpochPlan, draw_plan, epoch_generator
from kdlab.data.policies import Augment

if TYPE_CHECKING:
    from kdlab.data.views import ViewBank


@dataclass
class ImageExtras:
    """What an image batch adds (its :attr:`Batch.extras <kdlab.core.batch.Batch>`): with mixup or cutmix the images
    were ``λ·x + (1 − λ)·x[mix_perm]`` (``mix_lambda`` = λ); ``temperature`` ``[B]`` is each example's own
    distillation τ (per data source); ``view`` ``[B]`` the stored view each image shows (view replay)."""

    mix_perm: torch.Tensor | None = None
    mix_lambda: float | None = None
    temperature: torch.Tensor | None = None
    view: torch.Tensor | None = None


NO_EXTRAS = ImageExtras()


def image_extras(batch: Batch) -> ImageExtras:
    """The batch's image extras; an empty set for batches without them (a batch built by hand, or of a task that
    neither mixes nor re-weighs its examples)."""
    return batch.extras if isinstance(batch.extras, ImageExtras) else NO_EXTRAS


def part_bounds(total: int, part: int, parts: int) -> tuple[int, int]:
    """``[lo, hi)`` of contiguous part ``part`` of ``parts`` over ``total`` items; the first ``total % parts``
    parts hold one item more (the split of :func:`torch.tensor_split`)."""
    size, extra = divmod(total, parts)
    lo = part * size + min(part, extra)
    return lo, lo + size + (part < extra)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels → float32 in [0, 1]; float inputs pass through."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


class TensorLoader:
    """Iterates ``(x, y)`` tensors in batches on ``device``.

    ``shuffle``/``augment`` apply to training; evaluation loaders keep the order and the pixels.
    ``temperature`` ``[N]`` (optional) is each example's distillation τ, handed out with its batch.
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
        temperature: torch.Tensor | None = None,
        views: ViewBank | None = None,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
        self.views = views
        self.x, self.y = x.to(device), y.to(device)
        self.temperature = None if temperature is None else temperature.to(device)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.augment = augment or Augment()
        self.device = torch.device(device)
        self.part, self.parts = 0, 1  # see shard()

    def __len__(self) -> int:
        full, rest = divmod(len(self.x), self.batch_size)
        # sharded, a last batch too small to give every process a sample is dropped (see shard())
        return full if self.drop_last or rest < self.parts else full + (rest > 0)

    def shard(self, part: int, parts: int) -> TensorLoader:
        """This loader as process ``part`` of ``parts`` sees it (data-parallel training): every process draws the
        same epoch plan, cuts each batch's samples into ``parts`` contiguous pieces and takes piece ``part``
        *before* augmenting — per-sample crops, flips, ... are those of the one-process run (mixup/cutmix partners
        come from the same piece). ``batch_size`` stays the global batch; each batch says its ``global_size``.
        A last batch with fewer samples than ``parts`` is dropped by every process."""
        if not 0 <= part < parts:
            raise ValueError(f"part must lie in [0, {parts}), got {part}")
        if self.batch_size < parts:
            raise ConfigError(
                f"data.batch_size={self.batch_size} is the global batch, shared by {parts} processes; it must be "
                f"at least the number of processes. Use data.batch_size={parts} or more, or fewer processes."
            )
        out = copy.copy(self)
        out.part, out.parts = part, parts
        return out

    def plan(self, epoch: int) -> EpochPlan:
        """Every random draw of ``epoch``, made at once from a generator seeded by (seed, epoch); with stored
        views, the order and each image's view number."""
        n = len(self.x)
        g = epoch_generator(self.seed, epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        if self.views is not None:
            chosen = torch.randint(len(self.views), (n,), generator=g)
            return self.views.select(order.to(self.device), chosen.to(self.device))
        return draw_plan(g, order, self.augment, batches=len(self), batch_size=self.batch_size, device=self.device)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch`` from batch number ``start`` on."""
        return self.batches(self.plan(epoch), start)

    def view_batches(self, view: int) -> Iterator[Batch]:
        """Every image, in index order, showing its stored view number ``view``."""
        assert self.views is not None, "view_batches needs stored views"
        n = len(self.x)
        order = torch.arange(n, device=self.device)
        return self.batches(self.views.select(order, torch.full((n,), view, device=self.device)))

    def batches(self, plan: EpochPlan, start: int = 0) -> Iterator[Batch]:
        """The batches that ``plan`` describes, from batch number ``start`` on."""
        bs = self.batch_size
        for k in range(start, len(self)):
            sel = plan.order[k * bs : (k + 1) * bs]
            total = len(sel)
            lo, hi = part_bounds(total, self.part, self.parts)
            sel = sel[lo:hi]  # this process's piece (all of it in one process)
            x = to_float(self.x[sel])
            if plan.offsets is not None:
                x = random_crop(x, plan.offsets[sel], self.augment.crop)
            if plan.flips is not None:
                x = horizontal_flip(x, plan.flips[sel])
            if plan.vflips is not None:
                x = vertical_flip(x, plan.vflips[sel])
            if plan.angles is not None:
                x = rotate(x, plan.angles[sel])
            if plan.brightness is not None and plan.contrast is not None:
                x = jitter(x, plan.brightness[sel], plan.contrast[sel])
            extras = ImageExtras(view=None if plan.views is None else plan.views[sel])
            batch = Batch(x=x, y=self.y[sel], index=sel, extras=extras, global_size=total if self.parts > 1 else None)
            if self.temperature is not None:
                extras.temperature = self.temperature[sel]
            if plan.perms is not None:
                perm = plan.perms[k * bs : (k + 1) * bs]
                if len(sel) < bs:  # a permutation of the short last batch (masking would wait for the device)
                    perm = perm[perm < len(sel)]
                extras.mix_perm, extras.mix_lambda = perm, plan.lambdas[k]
                if plan.centres is None:
                    batch.x = mixup(x, plan.lambdas[k], perm)
                else:
                    box, extras.mix_lambda = cutmix_box(plan.lambdas[k], x.shape[-2], x.shape[-1], plan.centres[k])
                    batch.x = cutmix(x, box, perm)
            if plan.noisy is not None:
                self._add_noise(batch, plan.noisy[sel], plan.noise_seed + k, total, lo)
            yield batch

    @staticmethod
    def _add_noise(batch: Batch, noisy: torch.Tensor, seed: int, total: int, first: int) -> None:
        """Replace the flagged images by uniform noise in [0, 1]; they carry no label (−1) and no mix partner
        label matters for them (the teacher labels them). The noise is drawn for the whole batch of ``total`` and
        the rows from ``first`` on are taken, so a process's piece gets the noise of the one-process run."""
        g = torch.Generator().manual_seed(seed)
        noise = torch.rand((total, *batch.x.shape[1:]), generator=g)[first : first + len(batch)].to(batch.x.device)
        batch.x = torch.where(noisy[:, None, None, None], noise, batch.x)
        batch.y = torch.where(noisy, torch.full_like(batch.y, -1), batch.y)
