"""Find or build the teacher-output cache of a run: one teacher pass over every (sample, view), stored once and
reused by every later run with the same teacher weights, images and views."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kdlab.cache.store import CachedOutputs, CacheWriter, open_cache, valid_cache
from kdlab.data.loader import TensorLoader
from kdlab.training import distributed
from kdlab.training.teachers import Teacher

Log = Callable[[str], None]


def cache_root(configured: str | None = None) -> Path:
    """``cache.dir`` if set, else ``$KDLAB_CACHE``, else ``~/.cache/kdlab/teacher``."""
    if configured:
        return Path(configured).expanduser()
    env = os.environ.get("KDLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kdlab" / "teacher"


def cache_folder(root: Path, teacher_name: str, key: dict[str, Any]) -> Path:
    """The folder of a cache: named by the teacher and a hash of everything but the teacher's weights, so that a
    retrained teacher of the same name finds the old cache, sees that it is stale and replaces it."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", teacher_name).strip("_.")[:60] or "teacher"
    rest = {k: v for k, v in key.items() if k != "teacher_weights"}
    return root / f"{slug}-{hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:12]}"


def find_or_build(
    teacher: Teacher,
    loader: TensorLoader,
    folder: Path,
    key: dict[str, Any],
    *,
    autocast: contextlib.AbstractContextManager[Any] | None = None,
    log: Log = lambda message: None,
) -> tuple[CachedOutputs, bool]:
    """The valid cache in ``folder``, built first when missing, stale or damaged; returns it and whether it was
    built now (top-k compressed when ``key['top_k']`` is set). ``loader`` visits every training image in index
    order, and has the stored views if there are any."""
    found = valid_cache(folder, key, log)
    if found is not None:
        return found, False
    views = len(loader.views) if loader.views is not None else 1
    began = time.perf_counter()
    writer = CacheWriter(folder, key, len(loader.x), views, key["top_k"])
    try:
        with torch.no_grad(), autocast or contextlib.nullcontext():
            for view in range(views):
                batches = loader.view_batches(view) if loader.views is not None else loader.epoch(0)
                for batch in batches:
                    writer.write(batch.index, view, teacher(batch.x))
        writer.commit()
    except BaseException:
        writer.abandon()
        raise
    cache = open_cache(folder, key)
    log(
        f"Teacher-output cache built in {time.perf_counter() - began:.1f} s: {len(loader.x):,} images × {views} "
        f"view(s), {cache.nbytes / 2**20:.1f} MiB in {folder}"
    )
    return cache, True


def shared_build(
    build: Callable[[], tuple[CachedOutputs, bool]],
    follow: Callable[[], None] | None = None,
    found: Callable[[], bool] | None = None,
) -> tuple[CachedOutputs, bool]:
    """Under torchrun, rank 0 builds (or checks) the cache while the other ranks wait, then they open it.

    With a teacher sharded by FSDP each of its units is gathered from every process at each forward pass, so rank 0
    cannot run them alone: ``found`` (asked on rank 0) says whether a valid cache is there already, and when it is
    not, the other ranks run the build's teacher passes too (``follow``), their outputs dropped."""
    if distributed.world_size() == 1:
        return build()
    if follow is not None and found is not None and not distributed.on_main(found) and not distributed.is_main():
        follow()
    result = build() if distributed.is_main() else None
    distributed.barrier()
    return result if result is not None else (build()[0], False)
