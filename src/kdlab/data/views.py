"""Stored augmented views: K fixed views of every training image, replayed in training (``cache.views``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kdlab.data.plans import EpochPlan, draw_plan, epoch_generator
from kdlab.data.policies import Augment

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
        n = len(x)
        plans = []
        for k in range(views):  # view k: the draws of "epoch" k of an unshuffled loader with batches of one
            g = epoch_generator(seed, k)
            plans.append(draw_plan(g, torch.arange(n), augment, batches=n, batch_size=1, device=x.device))
        return cls(plans)

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
