"""One batch as the engine and every method see it."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """One batch: pixels ``x`` in [0, 1], labels ``y`` (−1 = unlabelled), ``index`` = sample indices
    into the split. With mixup, ``mix_perm``/``mix_lambda`` say how the images were mixed. Batches of
    sentences (:mod:`kdlab.data.sentences.encoding`) hold token ids in ``x`` and carry a ``mask``."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    mix_perm: torch.Tensor | None = None
    mix_lambda: float | None = None
    temperature: torch.Tensor | None = None  # [B] per-example distillation temperature (per data source)
    view: torch.Tensor | None = None  # [B] which stored view of each image this is (view replay), else None
    mask: torch.Tensor | None = None  # [B, n] positions that exist, for batches of sequences
    teacher_x: torch.Tensor | None = None  # the same sentences in the teacher's vocabulary, when it has its own
    global_size: int | None = None  # sharded over processes: the size of the whole batch this part was cut from

    def __len__(self) -> int:
        return self.x.shape[0]
