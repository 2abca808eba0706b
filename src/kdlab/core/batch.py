"""One batch as the engine and every method see it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch

Inputs = torch.Tensor | Mapping[str, Any]  # a tensor, or named tensors (and keyword options such as logits_to_keep)
E = TypeVar("E")


@dataclass
class Batch(Generic[E]):
    """One batch of ``B`` examples.

    ``x`` holds the inputs: one tensor (pixels in [0, 1] ``[B, C, H, W]``, feature vectors ``[B, d]``, word and
    character ids ``[B, n, 1 + C]``) or a mapping of named tensors (``input_ids``, ``attention_mask``, ...) and the
    keyword options a model is called with (``logits_to_keep``, ``output_hidden_states``).
    ``y`` holds the targets (``[B]`` class ids, or per position ``[B, n, ...]``; −1 = unlabelled), ``index`` the
    examples' indices in their split. ``extras`` is the one place for what a task adds: its type is the task's own
    (:class:`kdlab.data.loader.ImageExtras` — mixing, per-example temperature, stored view — for image batches,
    :class:`kdlab.data.sentences.loader.SentenceExtras` — mask, the teacher's encoding — for sentences), None when a
    task adds nothing. ``global_size``: under torchrun, the size of the global batch this piece was cut from (the
    piece's loss is a mean over the piece). ``global_share``: the piece's loss is already its share of the global
    batch's loss (the language-model losses divide by the whole window's token count), so only the averaging of
    the processes' gradients is to be undone.
    """

    x: Inputs
    y: torch.Tensor
    index: torch.Tensor
    extras: E | None = None
    global_size: int | None = None
    global_share: bool = False

    def __len__(self) -> int:
        return self.y.shape[0]


def feed(model: Callable[..., Any], inputs: Inputs) -> Any:
    """How a model consumes a batch's inputs: a tensor as its one argument, a mapping of named tensors as keyword
    arguments (``model(input_ids=..., attention_mask=...)``, as Hugging Face models take them)."""
    return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
