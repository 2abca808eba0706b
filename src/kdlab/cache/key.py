"""What a teacher-output cache was computed from, as hashes: the teacher's weights, the images, the views.

A cache is valid for a run only when every part matches; :func:`differences` names the parts that do not, so a
stale cache is reported (and rebuilt) instead of silently used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import torch
from torch import nn

from kdlab.data.policies import Augment

FORMAT = 2  # bump when the file layout or what is stored changes (2: a checksum per array)


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in name order. A tensor sharded over processes (FSDP's
    ``DTensor``) is hashed whole — gathered one at a time (a collective: every process hashes the same names), so a
    sharded teacher has the digest it has in one process."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach()
        gather = getattr(t, "full_tensor", None)
        t = (gather() if callable(gather) else t).cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def weights_digest(model: nn.Module) -> str:
    """Hash of every parameter and buffer (BatchNorm statistics included)."""
    return tensor_digest(dict(model.state_dict()))


def views_description(augment: Augment, views: int, seed: int) -> dict[str, Any]:
    """The views a cache holds: one fixed view per image (no augmentation), or K drawn from ``seed``."""
    if not augment.active:
        return {"views": 1, "augment": "none"}
    return {"views": views, "augment": dataclasses.asdict(augment), "view_seed": seed}


def cache_key(
    teacher: nn.Module,
    images: torch.Tensor,
    views: dict[str, Any],
    *,
    top_k: int | None,
    layers: tuple[str, ...],
    precision: str,
) -> dict[str, Any]:
    """Every input that determines the cached outputs, hashed where large. ``precision`` names the autocast
    the teacher ran under (outputs differ between float32 and bfloat16)."""
    return {
        "format": FORMAT,
        "teacher_weights": weights_digest(teacher),
        "data": tensor_digest({"images": images}),
        "views": hashlib.sha256(json.dumps(views, sort_keys=True).encode()).hexdigest(),
        "top_k": top_k,
        "layers": sorted(layers),
        "precision": precision,
    }


def differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The parts of two keys that differ (empty: the cache is valid)."""
    return [name for name in sorted(set(stored) | set(wanted)) if stored.get(name) != wanted.get(name)]
