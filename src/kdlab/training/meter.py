"""The training loss meter: running sums of the loss terms kept on the device, read by the host rarely."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from kdlab.training import distributed


@dataclass
class Meter:
    """Running sums of the loss terms, kept on the device; ``first_bad`` is the first non-finite step.

    Under torchrun each process adds its piece's loss times its weight (see
    :func:`kdlab.training.distributed.loss_weight`),
    and reading sums over the processes: the mean is that of the global batches."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    steps: int = 0
    first_bad: torch.Tensor | None = None

    def add(self, terms: dict[str, torch.Tensor], loss: torch.Tensor, step: int, weight: float = 1.0) -> None:
        for name, value in {"loss": loss, **terms}.items():
            value = value.detach().float()
            value = value * weight if weight != 1.0 else value
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        bad = ~torch.isfinite(loss.detach())
        first = self.first_bad if self.first_bad is not None else torch.full_like(loss, -1, dtype=torch.long)
        self.first_bad = torch.where(bad & (first < 0), torch.full_like(first, step), first)
        self.steps += 1

    def reset(self) -> None:
        self.sums, self.steps, self.first_bad = {}, 0, None

    def _global(self) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The sums over every process divided by their number (one process: the sums), and the earliest bad
        step of any process — the same on every rank. A collective under torchrun: every rank calls it."""
        world = distributed.world_size()
        if world == 1 or not self.steps:
            return self.sums, self.first_bad
        assert self.first_bad is not None
        sums = distributed.all_reduce(torch.stack(list(self.sums.values()))).div_(world)
        never = torch.iinfo(torch.long).max
        first = distributed.all_reduce(torch.where(self.first_bad < 0, never, self.first_bad), "min")
        return dict(zip(self.sums, sums, strict=True)), torch.where(first == never, -1, first)

    def read(self) -> tuple[dict[str, float], int]:
        """Mean of every term since the last reset and the first bad step (−1: none) — one host sync."""
        if not self.steps:
            return {}, -1
        sums, first_bad = self._global()
        assert first_bad is not None
        values = torch.stack([*sums.values(), first_bad.float()]).cpu().tolist()
        means = {k: v / self.steps for k, v in zip(sums, values[:-1], strict=True)}
        return means, int(values[-1])

    def state(self) -> dict[str, Any]:
        """The meter to checkpoint (under torchrun, the global sums each rank resumes from)."""
        sums, first_bad = self._global()
        return {
            "sums": {k: v.cpu() for k, v in sums.items()},
            "steps": self.steps,
            "first_bad": None if first_bad is None else first_bad.cpu(),
        }

    def load(self, state: dict[str, Any], device: torch.device) -> None:
        self.sums = {k: v.to(device) for k, v in state["sums"].items()}
        self.steps = state["steps"]
        self.first_bad = None if state["first_bad"] is None else state["first_bad"].to(device)
