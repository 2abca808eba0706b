"""Predictions over a whole split, and the fidelity metrics of a student against a teacher."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.metrics import as_matrix, fidelity_metrics, linear_cka, rbf_cka, read
from kdlab.training import distributed
from kdlab.training.taps import Taps
from kdlab.training.teachers import Teacher

if TYPE_CHECKING:
    from kdlab.training.engine import BatchSource

Predict = Callable[[Batch], torch.Tensor]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore its training flags afterwards."""
    modes = [m.training for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in zip(model.modules(), modes, strict=True):
            m.training = mode


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
    """A predictor that calls ``model`` (in whatever mode it is) on the batch's pixels."""
    return lambda batch: model(batch.x)


def split_metrics(
    student_logits: torch.Tensor, targets: torch.Tensor | None, teacher_logits: torch.Tensor | None
) -> dict[str, float]:
    """Accuracy/NLL/ECE (when labelled) and agreement/KL/TV (when a teacher is given), read once."""
    if targets is not None and bool((targets < 0).any()):
        labelled = targets >= 0
        base = fidelity_metrics(student_logits=student_logits[labelled], targets=targets[labelled])
        targets = None
    else:
        base = {}
    return read(
        {
            **base,
            **fidelity_metrics(student_logits=student_logits, targets=targets, teacher_logits=teacher_logits),
        }
    )


@torch.no_grad()
def layer_features(
    models: dict[str, tuple[nn.Module, Sequence[str]]], batches: Iterable[Batch], limit: int = 2000
) -> dict[str, dict[str, torch.Tensor]]:
    """``{model: {layer: [n, features]}}`` for the named layers of each model, in eval mode, on the first
    ``limit`` examples of ``batches`` (conv maps averaged over space per channel; kept on the host)."""
    taps = {key: Taps(model, layers, owner=key) for key, (model, layers) in models.items()}
    kept: dict[str, dict[str, list[torch.Tensor]]] = {
        key: {n: [] for n in layers} for key, (_, layers) in models.items()
    }
    seen = 0
    with contextlib.ExitStack() as stack:
        for key, (model, _) in models.items():
            stack.enter_context(taps[key])
            stack.enter_context(eval_mode(model))
        for batch in batches:
            for key, (model, _) in models.items():
                model(batch.x)
                for name, value in taps[key].collect().items():
                    kept[key][name].append(as_matrix(value).cpu())
            seen += len(batch)
            if seen >= limit:
                break
    return {key: {n: torch.cat(v)[:limit] for n, v in layers.items()} for key, layers in kept.items()}


def layer_cka(
    student: nn.Module, teacher: Teacher, pairs: list[tuple[str, str]], batches: Iterable[Batch], limit: int = 2000
) -> dict[str, dict[str, float]]:
    """Linear and RBF CKA between tapped student and teacher layers on the first ``limit`` examples of
    ``batches`` (conv maps averaged over space per channel); keys ``"student_layer~teacher_layer"``."""
    if teacher.size != 1:
        raise ConfigError(
            "CKA compares one teacher's layers with the student's; give a single teacher, not an ensemble."
        )
    layers = {"student": (student, [p[0] for p in pairs]), "teacher": (teacher.members[0], [p[1] for p in pairs])}
    features = layer_features(layers, batches, limit)
    out = {}
    for s_name, t_name in pairs:
        x, y = features["student"][s_name], features["teacher"][t_name]
        out[f"{s_name}~{t_name}"] = {"linear": float(linear_cka(x, y)), "rbf": float(rbf_cka(x, y))}
    return out
