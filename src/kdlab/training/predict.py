"""Predictions of one or more models over a whole split (under torchrun: shared out and gathered)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from kdlab.core.batch import Batch, feed
from kdlab.core.outputs import as_model_output
from kdlab.training import distributed

if TYPE_CHECKING:
    from kdlab.training.engine import BatchSource

Predict = Callable[[Batch], torch.Tensor]


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager[object]:
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


@torch.no_grad()
def predict_all(
    predictors: dict[str, Predict], batches: Iterable[Batch], device: torch.device
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Run every predictor over the same batches; returns float32 logits ``[N, c]`` per name, targets and
    sample indices (all on the device; nothing is copied to the host)."""
    logits: dict[str, list[torch.Tensor]] = {name: [] for name in predictors}
    targets, index = [], []
    with autocast_for(device):
        for batch in batches:
            for name, fn in predictors.items():
                logits[name].append(fn(batch).float())
            targets.append(batch.y)
            index.append(batch.index)
    return {k: torch.cat(v) for k, v in logits.items()}, torch.cat(targets), torch.cat(index)


def predict_source(
    predictors: dict[str, Predict], source: BatchSource, device: torch.device
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """:func:`predict_all` over the batches of epoch 0 of ``source``. Under torchrun each process predicts a
    contiguous block of the batches and the outputs are gathered on every rank in batch order: the same batches,
    the same order and so the same metrics as one process (with fewer batches than processes, each does all)."""
    count = len(source)
    if distributed.world_size() == 1 or count < distributed.world_size():
        return predict_all(predictors, source.epoch(0), device)
    mine = distributed.block(count)
    logits, targets, index = predict_all(predictors, itertools.islice(source.epoch(0, mine.start), len(mine)), device)
    gather = distributed.all_gather
    return {k: gather(v) for k, v in logits.items()}, gather(targets), gather(index)


def model_predictor(model: nn.Module) -> Predict:
    """A predictor that calls ``model`` (in whatever mode it is) on the batch's inputs and reads its logits."""
    return lambda batch: as_model_output(feed(model, batch.x)).logits
