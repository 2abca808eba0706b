"""Where an image run's teacher outputs come from: the teacher-output cache when the views are fixed or stored, else
the teacher online — and why, for the run's summary."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kdlab.cache.build import Log, cache_folder, cache_root, find_or_build, shared_build
from kdlab.cache.key import cache_key, views_description
from kdlab.cache.select import TeacherSource, from_cache, online
from kdlab.cache.settings import CacheConfig
from kdlab.core.errors import ConfigError
from kdlab.methods.layers import feature_shapes
from kdlab.tasks.image.sources import Sources
from kdlab.training.precision import autocast_dtype
from kdlab.training.teachers import Teacher

FEATURE_BUDGET_BYTES = 4 << 30  # tapped teacher features are cached only while they take at most this much


def teacher_source(
    method: nn.Module,
    teacher: Teacher,
    teacher_name: str,
    sources: Sources,
    settings: CacheConfig,
    *,
    enabled: bool,
    precision: str,
    device: torch.device,
    log: Log,
) -> tuple[TeacherSource, dict[str, Any]]:
    """The teacher source of one run and a description of it for the run's summary."""
    layers = tuple(getattr(method, "teacher_layers", ()))
    reason = _refusal(method, teacher, sources, layers, enabled)
    if reason:
        return online(teacher), {"kind": "online", "reason": reason}
    check_settings(settings, sources.info.num_classes)
    loader = sources.teacher_loader()
    dtype = autocast_dtype(precision, device)
    key = cache_key(
        teacher,
        loader.x,
        views_description(loader.augment, len(sources.views or ()), settings.view_seed),
        top_k=settings.top_k,
        layers=layers,
        precision=f"{device.type}:{dtype}",
    )
    folder = cache_folder(cache_root(settings.dir), teacher_name, key)
    teacher.tap(layers)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else None
    cache, built = shared_build(lambda: find_or_build(teacher, loader, folder, key, autocast=autocast, log=log))
    described = {"kind": "cache", "folder": str(folder), "views": cache.views, "top_k": settings.top_k}
    return from_cache(cache.to(device)), {**described, "built": built, "mib": round(cache.nbytes / 2**20, 2)}


def check_settings(settings: CacheConfig, num_classes: int) -> None:
    """Refuse cache settings the data cannot have (called before a run makes any folder)."""
    if settings.top_k is not None and settings.top_k > num_classes:
        raise ConfigError(
            f"cache.top_k={settings.top_k} but the data have {num_classes} classes; use 1..{num_classes} or null."
        )


def _refusal(
    method: nn.Module, teacher: Teacher, sources: Sources, layers: tuple[str, ...], enabled: bool
) -> str | None:
    """Why the teacher must run online for this run (None: the cache can serve it)."""
    if not enabled:
        return "teacher_cache is false"
    if getattr(method, "needs_member_logits", False):
        return "the method reads each ensemble member's logits"
    if sources.teacher_loader is None:
        return (
            "the training batches come from your DataLoader, whose order and transforms are its own (give (x, y) "
            "tensors or a Dataset to have the teacher's outputs cached)"
        )
    if not sources.fixed_views and sources.views is None:
        return "augmentation draws new views every epoch (set cache.views=K to store and replay K views)"
    if layers:
        loader = sources.teacher_loader()
        shapes = feature_shapes(teacher.members[0], layers, tuple(loader.x.shape[1:]), owner="teacher")
        views = len(sources.views or ()) or 1
        size = len(loader.x) * views * sum(shape.numel() for shape in shapes.values()) * 4
        if size > FEATURE_BUDGET_BYTES:
            return f"the tapped teacher features would take {size / 2**30:.1f} GiB (more than 4 GiB)"
    return None
