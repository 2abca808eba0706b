"""Where a language-model run's teacher outputs come from: the teacher online on every batch (full logits, or its
hidden states for the chunked losses), or — with ``cache.top_k`` — the top-k teacher cache of
:mod:`kdlab.cache.lm`, built once per (teacher weights, sequences, k, τ, dtype, precision) and shared by runs."""

from __future__ import annotations

import collections
from typing import Any

import torch
from torch import nn

from kdlab.cache.build import cache_folder, cache_root, shared_build
from kdlab.cache.lm import TopKTeacher, find_or_build, lm_cache_key, target_offsets, teacher_log_probs
from kdlab.cache.select import TeacherSource
from kdlab.cache.settings import CacheConfig
from kdlab.cache.store import CachedOutputs, valid_cache
from kdlab.data.lm import LMLoader, LMTokens
from kdlab.pipeline.task import Log
from kdlab.training import distributed
from kdlab.training.precision import autocast_dtype
from kdlab.training.teachers import Teacher


def online(teacher: Teacher) -> TeacherSource:
    return lambda batch: teacher(batch.x)


def teacher_source(
    method: nn.Module,
    teacher: Teacher,
    teacher_name: str,
    tokens: LMTokens,
    settings: CacheConfig,
    *,
    enabled: bool,
    precision: str,
    device: torch.device,
    batch_size: int,
    trim: bool,
    log: Log,
) -> tuple[TeacherSource, dict[str, Any]]:
    """The teacher source of one run and its description for the summary."""
    params = getattr(method, "params", None)
    reason = None
    if not enabled:
        reason = "teacher_cache is false"
    elif settings.top_k is None:
        reason = "no cache.top_k: full-vocabulary teacher logits are not cached (set cache.top_k=K to cache them)"
    elif params is None or getattr(params, "mode", "supervised") != "supervised":
        reason = "the teacher scores continuations generated during training, which no cache can hold"
    if reason is not None:
        return online(teacher), {"kind": "online", "reason": reason}
    assert settings.top_k is not None and params is not None
    dtype = autocast_dtype(precision, device)
    key = lm_cache_key(teacher, tokens, top_k=settings.top_k, temperature=params.temperature,
                       dtype=settings.dtype, precision=f"{device.type}:{dtype}")  # fmt: skip
    folder = cache_folder(cache_root(settings.dir), teacher_name, key)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else None
    loader = LMLoader(tokens, batch_size, device=device, trim_logits=trim)
    temperature = params.temperature

    def build() -> tuple[CachedOutputs, bool]:
        return find_or_build(teacher, loader, tokens, folder, key, autocast=autocast, log=log)

    def passes() -> None:  # a sharded teacher: every process runs the build's teacher passes
        collections.deque(teacher_log_probs(teacher, loader, temperature, autocast), maxlen=0)

    if distributed.is_sharded(teacher.members[0]):
        cache, built = shared_build(build, passes, lambda: valid_cache(folder, key) is not None)
    else:
        cache, built = shared_build(build)
    source = TopKTeacher(cache, target_offsets(tokens), device)
    targets = max(int(target_offsets(tokens)[-1]), 1)
    described = {
        "kind": "cache", "folder": str(folder), "top_k": settings.top_k, "dtype": settings.dtype,
        "temperature": params.temperature, "alignment": key["alignment"], "built": built,
        "mib": round(source.nbytes / 2**20, 2), "bytes_per_token": round(source.nbytes / targets, 1),
    }  # fmt: skip
    return source, described
