"""A run's progress on stderr: a live bar on a terminal; in a log file or a pipe, a line every few seconds and one
at the end of every epoch (a bar redrawn per step would write a line per step)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

LINE_EVERY_S = 10.0


class Progress:
    """Counts optimisation steps out of ``total`` (from ``initial`` on a resume); ``note`` sets the figures shown
    beside the count (epoch, loss, validation metrics)."""

    def __init__(
        self, total: int, *, initial: int = 0, label: str = "train", enabled: bool = True, stream: TextIO | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled, self.total, self.label = enabled, total, label
        self.done = self.initial = initial
        self.terminal = enabled and self.stream.isatty()
        options = {"desc": label, "unit": "step", "dynamic_ncols": True, "leave": True, "file": self.stream}
        self.bar = tqdm(total=total, initial=initial, **options) if self.terminal else None
        self.fields: dict[str, Any] = {}
        self.began = time.perf_counter()
        self.last = self.began

    def update(self, steps: int = 1) -> None:
        self.done += steps
        if self.bar is not None:
            self.bar.update(steps)
        elif self.enabled and time.perf_counter() - self.last >= LINE_EVERY_S:
            self._line()

    def note(self, **fields: Any) -> None:
        self.fields.update(fields)
        if self.bar is not None:
            self.bar.set_postfix(**self.fields)

    def epoch_done(self) -> None:
        """A line at the end of every epoch when the stream is not a terminal."""
        if self.enabled and self.bar is None:
            self._line()

    def _line(self) -> None:
        now = time.perf_counter()
        self.last = now
        rate = (now - self.began) / max(self.done - self.initial, 1)
        eta = rate * max(self.total - self.done, 0)
        figures = " ".join(f"{k} {v}" for k, v in self.fields.items())
        print(
            f"{self.label}: step {self.done}/{self.total} ({100 * self.done / max(self.total, 1):.0f} %) "
            f"{figures} · eta {eta:.0f} s",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
