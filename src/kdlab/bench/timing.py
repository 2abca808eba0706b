"""Clocks for the benchmark: one wait for the device per timed window, or a wait around every phase of a step.

The throughput pass never waits inside the window, so the host can queue work ahead of the GPU as it does in
training; the per-phase split waits at both ends of each phase so that each part's time is its own.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished its queued work (a no-op on the CPU, where work is synchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def no_phase(name: str) -> contextlib.AbstractContextManager[Any]:
    """The phase timer that times nothing (a loop's default)."""
    return contextlib.nullcontext()


class PhaseTimer:
    """A ``phases`` callable for :class:`kdlab.training.engine.Engine` (and the reference loop): ``timer(name)`` is a
    context that adds the wall time of its block, device work included, to ``seconds[name]``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        synchronize(self.device)  # work queued before the phase belongs to whatever queued it
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start
