"""What a text job measures: accuracy, NLL, ECE and the student's agreement, KL and TV with its teacher (each model
reading the text with its own tokenizer), and the linear and RBF CKA between a student's and a teacher's layer
(its ``[CLS]`` or mean-pooled hidden state)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
from torch import nn

from kdlab.core.batch import Batch, Inputs, feed
from kdlab.core.errors import ConfigError
from kdlab.core.modes import eval_mode
from kdlab.core.outputs import as_model_output
from kdlab.metrics import linear_cka, rbf_cka
from kdlab.metrics.fidelity import split_metrics
from kdlab.models.encoders import encoder_anatomy, hidden_tensor
from kdlab.training.predict import predict_all
from kdlab.training.taps import Taps
from kdlab.training.teachers import Teacher

Pooling = Literal["cls", "mean"]
POOLINGS: tuple[Pooling, ...] = ("cls", "mean")


def teacher_inputs(batch: Batch) -> Inputs:
    """The batch in the teacher's own tokenisation (the student's when they share a tokenizer)."""
    own = getattr(batch.extras, "teacher_x", None)
    return batch.x if own is None else own


def logits_of(model: nn.Module, teacher: bool = False) -> Any:
    """A predictor: ``model``'s logits on the batch, read in the student's or the teacher's tokenisation."""
    pick = teacher_inputs if teacher else (lambda batch: batch.x)
    if isinstance(model, Teacher):  # the frozen wrapper takes the inputs whole
        return lambda batch: model(pick(batch)).logits
    return lambda batch: as_model_output(feed(model, pick(batch))).logits


def predictions(
    student: nn.Module | None, teacher: nn.Module | None, batches: Iterable[Batch], device: torch.device
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Logits ``[N, c]`` of the student (``"s"``) and the teacher (``"t"``) over ``batches``, and the labels."""
    predictors = {}
    if student is not None:
        predictors["s"] = logits_of(student)
    if teacher is not None:
        predictors["t"] = logits_of(teacher, teacher=True)
    with contextlib.ExitStack() as stack:
        for model in (student, teacher):
            if model is not None:
                stack.enter_context(eval_mode(model))
        logits, targets, _ = predict_all(predictors, batches, device)
    return logits, targets


def metrics(student_logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor | None) -> dict:
    """Accuracy, NLL, ECE (and agreement, KL, TV against the teacher) of logits over one split."""
    return split_metrics(student_logits, targets, teacher_logits)


def pooled(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """One vector per example from a layer's hidden states ``[B, T, d]``: position 0 (``[CLS]``) or the mean over
    the real (unpadded) positions."""
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def parse_pair(text: str) -> tuple[int, int, Pooling]:
    """``"S:T"`` or ``"S:T:mean"``: student and teacher hidden-state indices (0 = embeddings) and the pooling."""
    parts = text.split(":")
    try:
        pooling = parts[2] if len(parts) == 3 else "cls"
        if len(parts) not in (2, 3) or pooling not in POOLINGS:
            raise ValueError
        return int(parts[0]), int(parts[1]), pooling  # type: ignore[return-value]
    except ValueError:
        raise ConfigError(
            f"--cka {text!r} should be STUDENT:TEACHER[:POOLING] with hidden-state indices (0 = embeddings, L = last "
            f"block) and POOLING one of {', '.join(POOLINGS)} (default cls), e.g. 2:6 or 2:6:mean."
        ) from None


@torch.no_grad()
def layer_cka(
    student: nn.Module,
    teacher: nn.Module,
    pairs: Sequence[tuple[int, int, Pooling]],
    batches: Iterable[Batch],
    limit: int = 2000,
) -> dict[str, dict[str, float]]:
    """Linear and RBF CKA between pooled student and teacher hidden states on the first ``limit`` examples;
    keys ``"s{S}~t{T}:{pooling}"``."""
    anatomy = {"s": encoder_anatomy(student), "t": encoder_anatomy(teacher)}
    for s, t, _ in pairs:
        for key, index in (("s", s), ("t", t)):
            if not 0 <= index <= anatomy[key].num_layers:
                who = "student" if key == "s" else "teacher"
                raise ConfigError(
                    f"CKA layer {index} is out of range for the {who}: its hidden states are 0 (embeddings) to "
                    f"{anatomy[key].num_layers}."
                )
    paths = {"s": sorted({p[0] for p in pairs}), "t": sorted({p[1] for p in pairs})}
    models = {"s": student, "t": teacher}
    taps = {k: Taps(models[k], [anatomy[k].hidden(i) for i in paths[k]], owner=k) for k in models}
    kept: dict[tuple[str, int, str], list[torch.Tensor]] = {}
    seen = 0
    with contextlib.ExitStack() as stack:
        for key, model in models.items():
            stack.enter_context(taps[key])
            stack.enter_context(eval_mode(model))
        for batch in batches:
            for key, model in models.items():
                inputs = batch.x if key == "s" else teacher_inputs(batch)
                feed(model, inputs)
                found = taps[key].collect()
                for index in paths[key]:
                    hidden = hidden_tensor(found[anatomy[key].hidden(index)]).float()
                    for pooling in POOLINGS:
                        vectors = pooled(hidden, inputs["attention_mask"], pooling).cpu()
                        kept.setdefault((key, index, pooling), []).append(vectors)
            seen += len(batch)
            if seen >= limit:
                break
    out = {}
    for s, t, pooling in pairs:
        x = torch.cat(kept[("s", s, pooling)])[:limit]
        y = torch.cat(kept[("t", t, pooling)])[:limit]
        out[f"s{s}~t{t}:{pooling}"] = {"linear": float(linear_cka(x, y)), "rbf": float(rbf_cka(x, y))}
    return out
