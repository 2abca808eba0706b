"""Batches straight from tensors that live on the training device.

The whole data set stays on the device as uint8 (four times smaller than float32) and is converted
per batch. Each epoch's randomness — order, crop offsets, flips, mixup — comes from a generator
seeded by ``(seed, epoch)``, so batch k of epoch e is the same whether or not the run was resumed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.data.augment import cutmix, cutmix_box, horizontal_flip, jitter, mixup, random_crop, rotate, vertical_flip
from kdlab.data.policies import Augment


def part_bounds(total: int, part: int, parts: int) -> tuple[int, int]:
    """``[lo, hi)`` of contiguous part ``part`` of ``parts`` over ``total`` items; the first ``total % parts``
    parts hold one item more (the split of :func:`torch.tensor_split`)."""
    size, extra = divmod(total, parts)
    lo = part * size + min(part, extra)
    return lo, lo + size + (part < extra)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels → float32 in [0, 1]; float inputs pass through."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


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


_PER_SAMPLE = ("offsets", "flips", "vflips", "angles", "brightness", "contrast")


@dataclass
class ViewBank:
    """K augmented views of every image, fixed once: ``plans[k]`` holds view k's per-sample parameters (crop
    offsets, flips, angle, jitter factors). Training replays them — each image shows one of its K views per
    epoch — so a sample index plus a view number always names the same pixels, and a teacher's outputs can be
    stored per (sample, view). Batch-level draws (mixup, cutmix, noise) pair images of one batch, so they
    cannot be stored per image and are refused."""

    plans: list[EpochPlan]

    @classmethod
    def draw(cls, x: torch.Tensor, augment: Augment, views: int, seed: int) -> ViewBank:
        if augment.mixup > 0 or augment.cutmix > 0 or augment.noise > 0:
            raise ValueError(
                f"stored views need per-image augmentation; mixup={augment.mixup}, cutmix={augment.cutmix} and "
                f"noise={augment.noise} mix or replace images within a batch (set them to 0, or use views=0)"
            )
        drawer = TensorLoader(x, x.new_zeros(len(x)), 1, device=x.device, augment=augment, seed=seed)
        return cls([drawer.plan(k) for k in range(views)])

    def __len__(self) -> int:
        return len(self.plans)

    def select(self, order: torch.Tensor, views: torch.Tensor) -> EpochPlan:
        """An epoch plan visiting samples in ``order`` where sample i shows its view ``views[i]``."""
        stacked = {
            name: torch.stack([getattr(p, name) for p in self.plans])
            for name in _PER_SAMPLE
            if getattr(self.plans[0], name) is not None
        }
        n = torch.arange(len(views), device=views.device)
        chosen = {name: table.to(views.device)[views, n] for name, table in stacked.items()}
        return EpochPlan(order=order, lambdas=[], perms=None, **{k: chosen.get(k) for k in _PER_SAMPLE}, views=views)


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
        n, aug = len(self.x), self.augment
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        if self.views is not None:
            chosen = torch.randint(len(self.views), (n,), generator=g)
            return self.views.select(order.to(self.device), chosen.to(self.device))
        offsets = torch.randint(0, 2 * aug.crop + 1, (n, 2), generator=g) if aug.crop else None
        flips = torch.rand(n, generator=g) < 0.5 if aug.flip else None
        lambdas, perms = [], None
        if aug.mixup > 0:
            rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=g)))
            lambdas = rng.beta(aug.mixup, aug.mixup, size=len(self)).tolist()
            perms = torch.cat([torch.randperm(self.batch_size, generator=g) for _ in range(len(self))])
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
            lambdas = rng.beta(aug.cutmix, aug.cutmix, size=len(self)).tolist()
            centres = [tuple(c) for c in rng.random((len(self), 2)).tolist()]
            perms = torch.cat([torch.randperm(self.batch_size, generator=g) for _ in range(len(self))])
        noisy = torch.rand(n, generator=g) < aug.noise if aug.noise > 0 else None
        noise_seed = int(torch.randint(2**62, (1,), generator=g)) if aug.noise > 0 else 0

        def dev(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(self.device)

        return EpochPlan(
            order.to(self.device),
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
            batch = Batch(x=x, y=self.y[sel], index=sel, view=None if plan.views is None else plan.views[sel])
            batch.global_size = total if self.parts > 1 else None
            if self.temperature is not None:
                batch.temperature = self.temperature[sel]
            if plan.perms is not None:
                perm = plan.perms[k * bs : (k + 1) * bs]
                if len(sel) < bs:  # a permutation of the short last batch (masking would wait for the device)
                    perm = perm[perm < len(sel)]
                batch.mix_perm, batch.mix_lambda = perm, plan.lambdas[k]
                if plan.centres is None:
                    batch.x = mixup(x, plan.lambdas[k], perm)
                else:
                    box, batch.mix_lambda = cutmix_box(plan.lambdas[k], x.shape[-2], x.shape[-1], plan.centres[k])
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
