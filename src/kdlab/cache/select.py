"""The two teacher sources of a training step: the teacher online on the batch's inputs, or the cache by
(sample index, stored view)."""

from __future__ import annotations

from collections.abc import Callable

from kdlab.cache.store import CachedOutputs
from kdlab.core.batch import Batch
from kdlab.core.outputs import ModelOutput
from kdlab.data.loader import image_extras
from kdlab.training.teachers import Teacher

TeacherSource = Callable[[Batch], ModelOutput]


def online(teacher: Teacher) -> TeacherSource:
    """The teacher run on exactly the (augmented) inputs the student sees."""
    return lambda batch: teacher(batch.x)


def from_cache(cache: CachedOutputs) -> TeacherSource:
    """Outputs looked up by (sample index, view number)."""
    return lambda batch: cache(batch.index, image_extras(batch).view)
