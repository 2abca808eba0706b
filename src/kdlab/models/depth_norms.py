"""The BatchNorm of a depth-switchable network (see :mod:`kdlab.models.depth`): one per depth
(``private``), or a shared affine with statistics per depth (``recalibrated``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class PrivateBatchNorm(nn.Module):
    """One BatchNorm2d (affine and running statistics) per depth that uses this position."""

    def __init__(self, channels: int, depths: Sequence[int]) -> None:
        super().__init__()
        self.by_depth = nn.ModuleDict({f"d{d}": nn.BatchNorm2d(channels) for d in depths})
        self.depth = max(depths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.by_depth[f"d{self.depth}"](x)

    def state_for(self, depth: int) -> dict[str, torch.Tensor]:
        return self.by_depth[f"d{depth}"].state_dict()


class RecalibratedBatchNorm(nn.BatchNorm2d):
    """Shared affine; the usual running statistics belong to the full depth, ``mean_d{k}``/``var_d{k}``
    to sub-depth k (``seen_d{k}`` counts its calibration batches; 0 → the full depth's are used)."""

    def __init__(self, channels: int, full: int, subs: Sequence[int]) -> None:
        super().__init__(channels)
        self.full = self.depth = full
        self.calibrating = False
        self._batches = 0
        for d in subs:
            self.register_buffer(f"mean_d{d}", torch.zeros(channels))
            self.register_buffer(f"var_d{d}", torch.ones(channels))
            self.register_buffer(f"seen_d{d}", torch.zeros((), dtype=torch.long))

    def start_calibration(self) -> None:
        """Forget sub-depth ``self.depth``'s statistics; the next train-mode forwards average theirs exactly."""
        getattr(self, f"mean_d{self.depth}").zero_()
        getattr(self, f"var_d{self.depth}").fill_(1.0)
        getattr(self, f"seen_d{self.depth}").zero_()
        self.calibrating, self._batches = True, 0

    def _sub_stats(self, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
        seen = getattr(self, f"seen_d{depth}") > 0
        mean = torch.where(seen, getattr(self, f"mean_d{depth}"), self.running_mean)
        return mean, torch.where(seen, getattr(self, f"var_d{depth}"), self.running_var)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.depth == self.full:
            return super().forward(x)
        if self.calibrating:  # cumulative average over the calibration batches (momentum 1/n)
            self._batches += 1
            getattr(self, f"seen_d{self.depth}").fill_(self._batches)
            mean, var = getattr(self, f"mean_d{self.depth}"), getattr(self, f"var_d{self.depth}")
            return F.batch_norm(x, mean, var, self.weight, self.bias, True, 1.0 / self._batches, self.eps)
        if self.training:  # batch statistics; the running ones are left alone
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        mean, var = self._sub_stats(self.depth)
        return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)

    def state_for(self, depth: int) -> dict[str, torch.Tensor]:
        state = self.state_dict()
        state = {k: state[k] for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
        if depth != self.full:
            state["running_mean"], state["running_var"] = (t.clone() for t in self._sub_stats(depth))
        return state


def make_norm(bn: str, channels: int, users: Sequence[int], full: int) -> nn.Module:
    if bn == "private":
        return PrivateBatchNorm(channels, users)
    return RecalibratedBatchNorm(channels, full, [d for d in users if d != full])


def norm_state(module: nn.Module, depth: int) -> dict[str, Any]:
    """The plain BatchNorm2d state of a (depth-aware) norm at ``depth``."""
    state_for = getattr(module, "state_for", None)
    return state_for(depth) if state_for is not None else module.state_dict()
