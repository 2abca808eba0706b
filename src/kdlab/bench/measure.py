"""How a training loop is measured — the same protocol for kdlab's engine and for the reference loop.

Throughput: ``warmup`` steps untimed, then a window of whole epochs or of ``steps`` steps with one wait for
the device at its end. Split: a separate pass (its own warm-up) in which every phase of a step is timed with a
wait at both of its ends; whatever the phases do not cover (making the batch, host syncs) is "other", so the
parts add up to the step.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from kdlab.bench.timing import PhaseTimer, no_phase, synchronize
from kdlab.training.engine import Phases

PARTS = ("teacher_forward", "student_forward_backward", "loss", "optimizer", "other")


class Loop(Protocol):
    """A training loop to measure: its batches and its step, with a ``phases`` timer hook."""

    phases: Phases

    def epoch(self, epoch: int) -> Iterable[Any]:
        """The batches of one epoch."""
        ...

    def warmup_extra(self) -> Iterable[Any]:
        """Batches to warm up on besides the first ``warmup`` (e.g. an epoch's short last batch)."""
        ...

    def step(self, batch: Any) -> int:
        """One training step; returns the number of examples (images, texts) in ``batch`` (known on the host)."""
        ...

    def summary(self) -> dict[str, float]:
        """Running training figures over every step so far, ``loss`` at least (a host sync)."""
        ...


@dataclass
class Throughput:
    """A timed window: ``steps`` steps over ``examples`` examples (images, texts) in ``seconds``; ``epochs`` whole
    epochs, or 0."""

    seconds: float
    steps: int
    examples: int
    epochs: int

    @property
    def examples_per_s(self) -> float:
        return self.examples / self.seconds

    @property
    def ms_per_step(self) -> float:
        return 1000 * self.seconds / self.steps


@dataclass
class Split:
    """Seconds per phase (engine phase names) and in all over ``steps`` synchronised steps."""

    seconds: dict[str, float]
    total: float
    steps: int

    def ms_per_step(self) -> dict[str, float]:
        """The parts of a step in ms (:data:`PARTS`, adding up to ``step``)."""
        s = self.seconds
        parts = {
            "teacher_forward": s.get("teacher_forward", 0.0),
            "student_forward_backward": s.get("student_forward", 0.0) + s.get("student_backward", 0.0),
            "loss": s.get("loss", 0.0),
            "optimizer": s.get("optimizer", 0.0),
        }
        parts["other"] = self.total - sum(parts.values())
        return {k: 1000 * v / self.steps for k, v in {**parts, "step": self.total}.items()}


def endless(loop: Loop, first_epoch: int = 0) -> Iterator[Any]:
    """The loop's batches, epoch after epoch."""
    for epoch in itertools.count(first_epoch):
        yield from loop.epoch(epoch)


def throughput(loop: Loop, device: torch.device, *, warmup: int, steps: int, epochs: int) -> Throughput:
    """Warm up, then time ``epochs`` whole epochs (1..epochs) or, with ``epochs`` 0, ``steps`` steps."""
    loop.phases = no_phase
    batches = endless(loop)
    for batch in itertools.chain(itertools.islice(batches, warmup), loop.warmup_extra()):
        loop.step(batch)
    if epochs:
        window: Iterable[Any] = itertools.chain.from_iterable(loop.epoch(e) for e in range(1, epochs + 1))
    else:
        window = itertools.islice(batches, steps)
    synchronize(device)
    start, done, examples = time.perf_counter(), 0, 0
    for batch in window:
        examples += loop.step(batch)
        done += 1
    synchronize(device)
    return Throughput(time.perf_counter() - start, done, examples, epochs)


def split(loop: Loop, device: torch.device, *, warmup: int, steps: int, first_epoch: int) -> Split:
    """Time the phases of ``steps`` steps, after ``warmup`` untimed ones, from a fresh epoch ``first_epoch``."""
    batches = endless(loop, first_epoch)
    loop.phases = no_phase
    for batch in itertools.islice(batches, warmup):
        loop.step(batch)
    timer = PhaseTimer(device)
    loop.phases = timer
    synchronize(device)
    start = time.perf_counter()
    for batch in itertools.islice(batches, steps):
        loop.step(batch)
    synchronize(device)
    total = time.perf_counter() - start
    loop.phases = no_phase
    return Split(dict(timer.seconds), total, steps)
