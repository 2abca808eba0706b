"""Which loop each mode of a pair runs, and what the modes of a pair share: its cost in MACs and its cache.

Image pairs (:class:`kdlab.bench.pairs.Pair`) run kdlab's engine over a ``TensorLoader`` and the classic reference
(:mod:`kdlab.bench.reference`); text pairs (:class:`kdlab.bench.text_pair.TextPair`) the engine over a ``TextLoader``
and the TextBrewer-style reference (:mod:`kdlab.bench.text_reference`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from kdlab.bench.measure import Loop
from kdlab.bench.modes import kdlab_loop, teacher_cache
from kdlab.bench.pairs import Pair, Workload
from kdlab.bench.reference import PerSampleImages, ReferenceLoop
from kdlab.bench.text_pair import TextPair, TextWorkload, text_cache, text_loop, text_macs
from kdlab.bench.text_reference import RawTexts, TextReferenceLoop
from kdlab.cache.select import TeacherSource
from kdlab.cache.store import CachedOutputs
from kdlab.models.complexity import count_macs
from kdlab.training.engine import Recipe
from kdlab.training.teachers import Teacher

AnyPair = Pair | TextPair
AnyWorkload = Workload | TextWorkload
Cache = CachedOutputs | TeacherSource  # image pairs: the cache's tables; text pairs: the text task's cached source


def pair_macs(work: AnyWorkload, batch_size: int) -> tuple[int, int, int | None]:
    """MACs per example of the teacher and the student, and the tokens a text example was counted at."""
    if isinstance(work, TextWorkload):
        return text_macs(work, batch_size)
    shape = tuple(work.x.shape[1:])
    return count_macs(work.teacher, shape), count_macs(work.student(), shape), None


def build_cache(
    teacher: Teacher, work: AnyWorkload, folder: Path, *, batch_size: int, device: torch.device, precision: str
) -> Cache:
    """A fresh teacher-output cache of the pair's training examples in ``folder``."""
    if isinstance(work, TextWorkload):
        return text_cache(teacher, work, folder, batch_size=batch_size, device=device, precision=precision)
    return teacher_cache(teacher, work, folder, batch_size=batch_size, device=device, precision=precision)


def _text_loop(
    work: TextWorkload, mode: str, *, device: torch.device, batch_size: int, recipe: Recipe, teacher: Teacher,
    cache: Cache | None,
) -> Loop:  # fmt: skip
    """kdlab's engine or, for ``reference``, the TextBrewer-style loop on a text pair."""
    pair = work.pair
    if mode == "reference":
        return TextReferenceLoop(
            work.student(), work.teacher, RawTexts(work.texts, work.labels), work.tokenizer, batch_size=batch_size,
            max_length=pair.max_length, optim=pair.optim, temperature=pair.temperature, ce_weight=pair.ce_weight,
            device=device, epochs=recipe.epochs, seed=work.seed,
        )  # fmt: skip
    assert not isinstance(cache, CachedOutputs)
    return text_loop(work, mode, teacher=teacher, cache=cache, batch_size=batch_size, device=device, recipe=recipe)


def build_loop(
    work: AnyWorkload,
    mode: str,
    *,
    device: torch.device,
    batch_size: int,
    recipe: Recipe,
    teacher: Teacher,
    cache: Cache | None,
) -> Loop:
    """The loop of ``mode`` on the pair of ``work``, with a fresh student; ``cache`` serves the cached mode."""
    if isinstance(work, TextWorkload):
        return _text_loop(work, mode, device=device, batch_size=batch_size, recipe=recipe, teacher=teacher, cache=cache)
    pair = work.pair
    if mode == "reference":
        return ReferenceLoop(
            work.student(),
            work.teacher,
            PerSampleImages(work.x, work.y, work.info.mean, work.info.std),
            batch_size=batch_size,
            optim=pair.optim,
            temperature=pair.temperature,
            ce_weight=pair.ce_weight,
            device=device,
            seed=work.seed,
        )
    assert cache is None or isinstance(cache, CachedOutputs)
    return kdlab_loop(work, mode, teacher=teacher, cache=cache, batch_size=batch_size, device=device, recipe=recipe)
