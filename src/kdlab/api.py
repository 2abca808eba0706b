"""The Python API: distil (or train) the user's own models on the user's own data, through the same planning and
execution as the command line (so the same checks, run folders and index rows).

>>> result = kdlab.distill(teacher=big_model, student=small_model, train=(x, y), test=(x_test, y_test),
...                        method="kd", temperature=4.0, epochs=5)
>>> result.metrics["student"]["test"]["agreement"]
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn
from torch.utils.data import DataLoader

from kdlab.core.errors import ConfigError
from kdlab.data.policies import Augment
from kdlab.data.user import UserData
from kdlab.models import hf
from kdlab.models.factory import OBJECT
from kdlab.pipeline.config import DataConfig, resolve
from kdlab.pipeline.dispatch import run
from kdlab.pipeline.member import resolve_device
from kdlab.pipeline.task import Provided
from kdlab.tasks.image.task import evaluate_models
from kdlab.tasks.image.teachers import TeacherLike
from kdlab.training import distributed
from kdlab.training.teachers import Teacher

IMAGE_TASK = "image_classification"  # the task of data given as tensors, Datasets and DataLoaders
TEXT_TASK = "text_classification"  # the task of Hugging Face models, or of data given with a tokenizer
LM_TASK = "causal_lm"  # the task of Hugging Face causal language models
DEFAULT_BATCH = {IMAGE_TASK: 128, TEXT_TASK: 32, LM_TASK: 16}
# the optimiser when none is named: SGD for image nets, AdamW with a fine-tuning rate for pretrained encoders
DEFAULT_OPTIM = {
    IMAGE_TASK: {"name": "sgd", "lr": 0.05, "weight_decay": 5e-4},
    TEXT_TASK: {"name": "adamw", "lr": 5e-5, "weight_decay": 0.01},
    LM_TASK: {"name": "adamw", "lr": 5e-4, "weight_decay": 0.0},
}


@dataclass
class DistillResult:
    """The trained student, its metrics (``{"teacher": {"test"}, "student": {"test", "train"}}``; ``teacher`` when
    there was one), the per-epoch history and the run folder."""

    student: nn.Module
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    run_dir: Path
    summary: dict[str, Any]


def _teachers(teacher: TeacherLike | None) -> tuple[list[Any], list[Any] | None]:
    """(the configuration's teacher list, the teacher objects) for what the API was given."""
    if teacher is None:
        return [], None
    if isinstance(teacher, Teacher):
        teacher = list(teacher.members)
    if isinstance(teacher, str | os.PathLike):
        return [str(teacher)], None
    items = [teacher] if isinstance(teacher, nn.Module) else list(teacher) if isinstance(teacher, Sequence) else None
    if not items:
        raise ConfigError(f"teacher must be an nn.Module, a list of them, or a path/pretrained name; got {teacher!r}.")
    if all(isinstance(t, str | os.PathLike) for t in items):
        return [str(t) for t in items], None
    names = [f"{OBJECT}{type(t).__name__}" if isinstance(t, nn.Module) else str(t) for t in items]
    return names, items


def _task(models: Sequence[Any], tokenizer: Any) -> str:
    """Language modelling when any model is a Hugging Face causal LM; text classification when a tokenizer is given
    or any model is another ``PreTrainedModel``; else images."""
    if any(hf.is_causal_lm(m) for m in models):
        return LM_TASK
    return TEXT_TASK if tokenizer is not None or any(hf.is_pretrained(m) for m in models) else IMAGE_TASK


def _lm_splits(splits: dict[str, Any], text: str) -> dict[str, Any]:
    """The API's language-model splits read into :class:`kdlab.data.lm.LMData` (documents, prompt/completion pairs
    or chat conversations; ``text=`` names the documents' column)."""
    from kdlab.data.lm import Columns, read_lm

    return {name: None if source is None else read_lm(source, Columns(text=text)) for name, source in splits.items()}


def _text_splits(splits: dict[str, Any], text: str, label: str, classes: int | None) -> dict[str, Any]:
    """The API's text splits read into :class:`kdlab.data.text.TextData`: the classes are the training split's
    (class ids ``0..classes-1`` when the labels are ids and the models' or ``num_classes`` say how many)."""
    from kdlab.data.text import read_texts

    train = read_texts(splits["train"], text=text, label=label)
    ids = [str(i) for i in range(len(train.label_names))]
    if classes is not None and train.label_names == ids and classes > len(ids):  # ids the split does not use
        train.label_names = [str(i) for i in range(classes)]
    out = {"train": train}
    for name in ("val", "test"):
        if splits[name] is not None:
            out[name] = read_texts(splits[name], text=text, label=label, label_names=train.label_names)
    return out


def _batch_size(train: UserData, batch_size: int | None, task: str) -> int:
    if not isinstance(train, DataLoader):
        return DEFAULT_BATCH[task] if batch_size is None else batch_size
    own = train.batch_size
    if own is None:
        raise ConfigError("The training DataLoader has no batch_size (a batch_sampler); give a DataLoader with one.")
    if batch_size is not None and batch_size != own:
        raise ConfigError(
            f"batch_size={batch_size}, but the training DataLoader makes batches of {own}; a DataLoader keeps its own "
            "batches, so leave batch_size out (or build the DataLoader with the batch size you want)."
        )
    return own


def _augment(augment: Augment | str | dict[str, Any] | None) -> Any:
    return dataclasses.asdict(augment) if isinstance(augment, Augment) else augment


def distill(
    teacher: TeacherLike | None,
    student: nn.Module | str,
    train: UserData,
    test: UserData | None = None,
    *,
    method: str = "kd",
    val: UserData | None = None,
    epochs: int = 10,
    batch_size: int | None = None,
    optimizer: str | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    schedule: str = "cosine",
    warmup_epochs: float = 0.0,
    augment: Augment | str | dict[str, Any] | None = None,
    device: str = "auto",
    seed: int = 0,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    progress: bool = False,
    teacher_cache: bool = True,
    num_classes: int | None = None,
    tokenizer: Any = None,
    text: str = "text",
    label: str = "label",
    data_options: dict[str, Any] | None = None,
    **hyper_parameters: Any,
) -> DistillResult:
    """Distil ``teacher`` (a model, a list of models = an ensemble, or a saved one) into ``student``.

    ``train``/``test``/``val`` are ``(x, y)`` tensors (images ``[N, C, H, W]``, vectors ``[N, d]``, ...), a
    ``Dataset`` of ``(input, label)`` pairs, a ``DataLoader`` (its own batches: leave ``batch_size`` out), or a
    kdlab data set name (e.g. ``"fashion_mnist"``, then ``test`` is its test split). ``student`` is an
    ``nn.Module`` or a zoo name; a model's forward may return logits, a tuple whose first element they are, or an
    object/mapping with ``logits``. ``num_classes`` defaults to one more than the largest label. The method's
    hyper-parameters go as keywords (``temperature=4``, ``ce_weight=0.1``; feature methods take
    ``student_layers``/``teacher_layers``, module paths). Everything is checked before anything is written; the run
    goes to ``runs_dir/name`` and the index, and the trained student comes back with its metrics.

    Text: ``teacher``/``student`` are Hugging Face ``PreTrainedModel`` sequence classifiers (or ``"hf:PATH"``),
    ``train``/``test``/``val`` a ``datasets.Dataset``, a list of ``(text, label)`` pairs, a mapping of columns or
    a CSV/JSONL path (``text=``/``label=`` name the columns), and ``tokenizer`` one tokenizer for both models or a
    ``(teacher_tokenizer, student_tokenizer)`` pair; ``method="tinybert"``, ``"minilm"``, ... take their options as
    keywords. Without ``optimizer``/``lr``/``weight_decay``: SGD 0.05, 5e-4 for images; AdamW 5e-5, 0.01 for text.

    Language models: ``teacher``/``student`` are Hugging Face causal LMs (``GPT2LMHeadModel``, ...) or ``"hf:PATH"``,
    ``tokenizer`` the one tokenizer both read with, ``train``/``test``/``val`` a list of texts, a ``datasets.Dataset``
    or records of ``text``, ``prompt``/``completion`` or chat ``messages``, a JSONL or text file, a folder of text
    files, or ``"stdlib"``; ``method="lm_kd"`` with ``divergence=``, ``mode=``, ``lmbda=``, ``beta=``, ...
    ``data_options`` sets the data options of any task (``{"max_length": 128, "prompt_length": 64,
    "micro_batch_size": 4}``); without an optimiser: AdamW 5e-4 for language models.
    """
    if distributed.launched():
        raise ConfigError(
            "kdlab.distill and kdlab.train train in one process, but this one was started by torchrun with "
            f"{distributed.world_size()}. For data-parallel training use the command: torchrun ... -m kdlab distill "
            "(your own model as student=package.module:callable); or run this script with plain python."
        )
    teacher_names, teacher_objects = _teachers(teacher)
    task = _task([student, *(teacher_objects or [])], tokenizer)
    named_data = isinstance(train, str) and (task == IMAGE_TASK or not Path(train).exists())
    splits = {"train": train, "test": test, "val": val}
    if task == LM_TASK and not named_data:
        splits = _lm_splits(splits, text)
    elif task == TEXT_TASK and not named_data:
        counts = [getattr(getattr(m, "config", None), "num_labels", None) for m in [student, *(teacher_objects or [])]]
        classes = num_classes or next((c for c in counts if c), None)
        splits = {"val": None, "test": None, **_text_splits(splits, text, label, classes)}
    data: dict[str, Any] = {
        **(data_options or {}),
        "name": train if named_data else f"{OBJECT}data",
        "batch_size": _batch_size(train, batch_size, task),
    }
    if augment is not None:
        data["augment"] = _augment(augment)
    raw: dict[str, Any] = {
        "name": name,
        "runs_dir": str(runs_dir),
        "data": data,
        "student": student if isinstance(student, str) else {"name": f"{OBJECT}{type(student).__name__}"},
        "teacher": teacher_names,
        "method": {"name": method, **hyper_parameters},
        "optim": {
            **DEFAULT_OPTIM[task],
            **{k: v for k, v in (("name", optimizer), ("lr", lr), ("weight_decay", weight_decay)) if v is not None},
            "schedule": schedule,
            "warmup_epochs": warmup_epochs,
        },
        "epochs": epochs,
        "seeds": [seed],
        "device": device,
        "teacher_cache": teacher_cache,
    }
    config = resolve(raw)
    provided = Provided(
        task,
        student=None if isinstance(student, str) else student,
        teachers=teacher_objects,
        train=None if named_data else splits["train"],
        test=None if named_data else splits["test"],
        val=None if named_data else splits["val"],
        num_classes=num_classes,
        tokenizer=tokenizer,
    )
    command: Literal["train", "distill"] = "distill" if teacher is not None else "train"
    outcome = run(config, command, provided=provided, progress=progress)
    summary = outcome.summaries["main"][0]
    history = [json.loads(line) for line in (outcome.folder / "metrics.jsonl").read_text().splitlines()]
    metrics = {k: v for k, v in summary.items() if k in ("teacher", "student")}
    return DistillResult(outcome.students["main"][0], metrics, history, outcome.folder, summary)


def train(model: nn.Module | str, train: UserData, test: UserData | None = None, **kwargs: Any) -> DistillResult:
    """Train ``model`` without a teacher: from labels alone (``method="ce"``) — a teacher, or the independent-student
    control — or a depth-switchable model with embedded KD (``method="ekd"``). Same keywords as :func:`distill`;
    the result has the same shape (the trained model under ``metrics["student"]``)."""
    return distill(None, model, train, test, method=kwargs.pop("method", "ce"), **kwargs)


def evaluate(
    teacher: TeacherLike,
    student: nn.Module | str,
    data: UserData,
    *,
    split: Literal["test", "val", "train"] = "test",
    device: str = "auto",
    batch_size: int = 256,
    cka: Sequence[tuple[str, str]] = (),
    cka_examples: int = 2000,
    tokenizer: Any = None,
    text: str = "text",
    label: str = "label",
) -> dict[str, dict[str, Any]]:
    """Fidelity of ``student`` to ``teacher`` on ``data``; for a data set name, on its ``split``
    (``val`` and ``train`` as kdlab splits the training set by default).

    Returns ``{"teacher": {accuracy, nll, ece}, "student": {accuracy, nll, ece, agreement, kl, tv}}``
    (accuracy/NLL/ECE only where the data are labelled). ``cka`` pairs a student layer with a teacher layer
    (module paths); each pair adds ``result["cka"]["student~teacher"] = {"linear", "rbf"}`` measured on the
    first ``cka_examples`` examples of the split.

    Causal LMs are evaluated on language-model data (a data set name such as ``"stdlib"``, or texts, records or a
    file as for :func:`distill`): next-token cross-entropy, perplexity, accuracy, ECE, and the student's agreement,
    KL, TV and top-5 overlap with the teacher.

    Hugging Face models (with ``tokenizer``: one, or a ``(teacher, student)`` pair) are evaluated on text data
    (a data set name, or a ``datasets.Dataset``, pairs, columns or a file: ``text=``/``label=`` name the columns);
    their ``cka`` pairs are hidden-state indices ``("2", "6")`` or with a pooling ``("2", "6:mean")``.
    """
    task = _task([teacher, student], tokenizer)
    if task == LM_TASK:
        from kdlab.tasks.lm.task import evaluate_models as evaluate_lm

        return evaluate_lm(teacher, student, data, tokenizer=tokenizer, split=split, device=resolve_device(device),
                           batch_size=batch_size, text=text)  # fmt: skip
    if task == TEXT_TASK:
        from kdlab.tasks.text.task import evaluate_models as evaluate_text

        return evaluate_text(
            teacher, student, data, tokenizer=tokenizer, split=split, device=resolve_device(device),
            batch_size=batch_size, cka=cka, cka_examples=cka_examples, text=text, label=label,
        )  # fmt: skip
    where = DataConfig(name=data) if isinstance(data, str) else data
    return evaluate_models(
        teacher,
        student,
        where,
        split=split,
        device=resolve_device(device),
        batch_size=batch_size,
        cka=cka,
        cka_examples=cka_examples,
    )
