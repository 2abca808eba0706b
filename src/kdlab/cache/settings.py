"""The teacher-output cache's settings (``cache.*`` in a run's configuration)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CacheConfig:
    """The teacher-output cache, used while ``teacher_cache`` is true. Without augmentation every image is one
    fixed view; with it, ``views`` = K > 0 stores K augmented views per image (their parameters drawn once from
    ``view_seed``) and training replays them, each image taking one of its K views per epoch; with ``views`` 0 an
    augmented run has the teacher online. ``top_k`` keeps the k largest logits of each view and the rest as one
    tail bucket; ``dir`` holds the cache files (default ``$KDLAB_CACHE`` or ``~/.cache/kdlab/teacher``). For language
    models ``top_k`` turns the cache on (the teacher's top-k next-token log-probabilities per trained position, see
    :mod:`kdlab.cache.lm`), stored in ``dtype``."""

    views: int = 0
    top_k: int | None = None
    view_seed: int = 0
    dir: str | None = None
    dtype: str = "float16"


CACHE_DTYPES = ("float16", "bfloat16", "float32")
