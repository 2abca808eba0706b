"""Methods used together: ``method=kd+at`` sums the terms of both."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.outputs import ModelOutput


class Combined(nn.Module):
    """The sum of several methods' terms.

    The label cross-entropy term (``ce``) is taken from the first method that has one, so that ``kd+at``
    does not count the labels twice (with ``kd`` at alpha = 0, ``at``'s label term is the one used); every
    other term keeps its name (prefixed by its method's name when two methods use the same term name).
    """

    def __init__(self, parts: dict[str, nn.Module], params: dict[str, Any]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(parts)
        self.params = params
        self.needs_teacher = any(m.needs_teacher for m in parts.values())
        self.needs_member_logits = any(getattr(m, "needs_member_logits", False) for m in parts.values())
        self.student_layers = tuple(dict.fromkeys(n for m in parts.values() for n in m.student_layers))
        self.teacher_layers = tuple(dict.fromkeys(n for m in parts.values() for n in m.teacher_layers))

    def start_epoch(self, epoch: int, epochs: int) -> None:
        for part in self.parts.values():
            if hasattr(part, "start_epoch"):
                part.start_epoch(epoch, epochs)

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        for name, method in self.parts.items():
            for key, value in method(student, teacher, batch).items():
                if key == "ce" and "ce" in terms:
                    continue
                terms[key if key not in terms else f"{name}.{key}"] = value
        return terms
