"""Where a text run's teacher outputs come from: the teacher-output cache (logits, and the hidden states or
projections a method taps while they fit), keyed by the teacher's weights and the tokenised texts — or the teacher
online, on each batch in its own tokenisation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from kdlab.cache.build import Log, cache_folder, cache_root, find_or_build
from kdlab.cache.key import cache_key
from kdlab.cache.select import TeacherSource, from_cache
from kdlab.cache.settings import CacheConfig
from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.tasks.text.evaluate import teacher_inputs
from kdlab.training.precision import autocast_dtype
from kdlab.training.teachers import Teacher

FEATURE_BUDGET_BYTES = 4 << 30  # tapped teacher features are cached only while they take at most this much
VIEWS = {"views": 1, "augment": "none"}  # texts are not augmented: one view per example


def online(teacher: Teacher) -> TeacherSource:
    """The teacher on each batch, in its own tokenisation."""
    return lambda batch: teacher(teacher_inputs(batch))


class _Padded:
    """The teacher on a batch, its tapped features ``[B, T, ...]`` padded with zeros to ``length`` positions so that
    every example's row in the cache has one shape (a run reads back the first T of them)."""

    def __init__(self, teacher: Teacher, length: int) -> None:
        self.teacher, self.length = teacher, length

    def __call__(self, inputs: Any) -> ModelOutput:
        out = self.teacher(inputs)
        padded = {}
        for name, value in out.features.items():
            value = value[0] if isinstance(value, tuple) else value
            padded[name] = F.pad(value, (0, 0) * (value.dim() - 2) + (0, self.length - value.shape[1]))
        return ModelOutput(logits=out.logits, features=padded)


class _TeacherPass:
    """Every training example once, in index order, in the teacher's tokenisation (what the cache builder reads)."""

    views = None

    def __init__(self, loader: Any, ids: torch.Tensor) -> None:
        self.loader, self.x = loader, ids

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        for batch in self.loader.epoch(epoch, start):
            yield Batch(x=teacher_inputs(batch), y=batch.y, index=batch.index)


def teacher_source(
    method: nn.Module,
    teacher: Teacher,
    teacher_name: str,
    loader: Any,
    ids: torch.Tensor,
    feature_dims: dict[str, int],
    settings: CacheConfig,
    *,
    enabled: bool,
    precision: str,
    device: torch.device,
    log: Log,
) -> tuple[TeacherSource, dict[str, Any]]:
    """The teacher source of one run and its description for the summary. ``loader`` visits the training texts in
    index order; ``ids`` are the teacher's token ids ``[N, T]``; ``feature_dims`` the width of each tapped layer."""
    layers = tuple(getattr(method, "teacher_layers", ()))
    teacher.tap(layers)
    size = ids.shape[0] * ids.shape[1] * sum(feature_dims.get(name, 0) for name in layers) * 4
    reason = None if enabled else "teacher_cache is false"
    if reason is None and size > FEATURE_BUDGET_BYTES:
        reason = f"the tapped teacher features would take {size / 2**30:.1f} GiB (more than 4 GiB)"
    if reason:
        return online(teacher), {"kind": "online", "reason": reason}
    if settings.top_k is not None:
        raise ConfigError("cache.top_k compresses many-class logits; a text classifier's logits are cached whole.")
    dtype = autocast_dtype(precision, device)
    key = cache_key(teacher, ids, VIEWS, top_k=None, layers=layers, precision=f"{device.type}:{dtype}")
    folder = cache_folder(cache_root(settings.dir), teacher_name, key)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else None
    cache, built = find_or_build(
        _Padded(teacher, ids.shape[1]), _TeacherPass(loader, ids), folder, key, autocast=autocast, log=log
    )
    described = {"kind": "cache", "folder": str(folder), "views": 1, "layers": list(layers)}
    return from_cache(cache.to(device)), {**described, "built": built, "mib": round(cache.nbytes / 2**20, 2)}
