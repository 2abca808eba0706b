"""kdlab's side of the benchmark: THE engine's ``step()`` over the pair's loader (a :class:`TensorLoader` of
images, a :class:`kdlab.data.text.TextLoader` of tokenised texts), as ``Engine.fit`` runs it.

Three modes share the pair's data, student initialisation and optimiser: the student alone (method ``ce``), KD
with the teacher run online on every batch, and KD with the teacher's logits served by the teacher-output cache
(:mod:`kdlab.cache`: built once for the pair's fixed views, memory-mapped, looked up by sample index). Text pairs
add ``tinybert``: TinyBERT's hidden-state and attention terms, the taps on both models, the teacher online
(:mod:`kdlab.bench.text_pair`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from kdlab.cache.build import find_or_build
from kdlab.cache.key import cache_key, views_description
from kdlab.cache.select import from_cache, online
from kdlab.cache.store import CachedOutputs
from kdlab.core.batch import Batch
from kdlab.data.loader import TensorLoader
from kdlab.methods import MethodContext, build_method
from kdlab.training.engine import SYNC_EVERY, Engine, Meter, Phases, Recipe
from kdlab.training.precision import autocast_dtype
from kdlab.training.teachers import Teacher

if TYPE_CHECKING:
    from kdlab.bench.pairs import Workload

KDLAB_MODES = ("student", "online", "cached")
IMAGE_MODES = (*KDLAB_MODES, "reference")
MODES = (*KDLAB_MODES, "tinybert", "reference")  # every mode, in the order they run; tinybert: text pairs only
MODE_LABELS = {
    "student": "student alone (ce)",
    "online": "kdlab KD, teacher online",
    "cached": "kdlab KD, teacher cached",
    "tinybert": "kdlab TinyBERT (hidden + attention taps), teacher online",
    "reference": "reference loop, teacher online",
}


class KdlabLoop:
    """:meth:`Engine.step` plus the device-side loss meter, read every ``SYNC_EVERY`` steps as ``fit`` does — the
    training loop without its progress bar, evaluation and checkpoints."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.meter = engine, Meter()
        engine.student.train()
        engine.method.train()

    @property
    def phases(self) -> Phases:
        return self.engine.phases

    @phases.setter
    def phases(self, value: Phases) -> None:
        self.engine.phases = value

    def epoch(self, epoch: int) -> Iterable[Batch]:
        return self.engine.train.epoch(epoch)

    def warmup_extra(self) -> Iterable[Batch]:
        """The epoch's short last batch, if it has one, so that compilation and autotuning have seen every batch
        shape before the clock starts."""
        loader = self.engine.train
        examples = len(loader.x) if isinstance(loader, TensorLoader) else getattr(loader, "size", 0)
        if len(loader) > 1 and examples % getattr(loader, "batch_size", 1):
            return loader.epoch(0, start=len(loader) - 1)
        return ()

    def step(self, batch: Batch) -> int:
        loss, terms = self.engine.step(batch)
        self.meter.add(terms, loss, self.meter.steps)
        if self.meter.steps % SYNC_EVERY == 0:
            self.meter.read()
        return len(batch)

    def summary(self) -> dict[str, float]:
        means, _ = self.meter.read()
        return {"loss": means["loss"]}


def teacher_cache(
    teacher: Teacher, work: Workload, folder: Path, *, batch_size: int, device: torch.device, precision: str
) -> CachedOutputs:
    """The pair's teacher-output cache (fixed views: the images as they are) in ``folder``, built if needed."""
    dtype = autocast_dtype(precision, device)
    loader = TensorLoader(work.x, work.y, batch_size, device=device)
    views = views_description(loader.augment, 0, 0)
    key = cache_key(teacher, loader.x, views, top_k=None, layers=(), precision=f"{device.type}:{dtype}")
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else None
    cache, _ = find_or_build(teacher, loader, folder, key, autocast=autocast)
    return cache.to(device)


def kdlab_loop(
    work: Workload,
    mode: str,
    *,
    teacher: Teacher,
    cache: CachedOutputs | None,
    batch_size: int,
    device: torch.device,
    recipe: Recipe,
) -> KdlabLoop:
    """An engine for ``mode`` (one of :data:`KDLAB_MODES`) over the pair's data with a fresh student; ``table``
    serves the cached mode's teacher logits (see :func:`teacher_cache`)."""
    pair = work.pair
    student = work.student().to(device)
    if mode == "student":
        name, params = "ce", {}
    else:
        name, params = "kd", {"temperature": pair.temperature, "ce_weight": pair.ce_weight}
    context = MethodContext(
        student, teacher, work.info.num_classes, input_shape=tuple(work.x.shape[1:]), num_train=len(work.x)
    )
    source = None
    if mode == "online":
        source = online(teacher)
    elif mode == "cached":
        assert cache is not None, "the cached mode needs the teacher-output cache"
        source = from_cache(cache)
    engine = Engine(
        student=student,
        method=build_method(name, params, context).to(device),
        train=TensorLoader(work.x, work.y, batch_size, device=device, shuffle=True, seed=work.seed),
        recipe=recipe,
        state_path=Path(os.devnull),  # step() never saves (only fit() does)
        teacher=source,
        progress=False,
        label=f"bench {mode}",
    )
    return KdlabLoop(engine)
