"""The image-classification task: images (or any fixed-shape inputs) → class logits ``[B, c]``; accuracy, NLL, ECE
and the student's agreement, KL and total variation with its teacher."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kdlab.core.modes import eval_mode
from kdlab.data.policies import Augment
from kdlab.metrics.fidelity import split_metrics
from kdlab.models.factory import check_models
from kdlab.models.files import teacher_members
from kdlab.pipeline.config import Config, DataConfig
from kdlab.pipeline.member import resolve_device
from kdlab.pipeline.task import TASKS, Command, Provided
from kdlab.tasks.image.evaluate import Shared
from kdlab.tasks.image.experiment import ImageExperiment
from kdlab.tasks.image.layers import layer_cka
from kdlab.tasks.image.sources import Sources, config_sources
from kdlab.tasks.image.teachers import TeacherLike, describe, load_teacher
from kdlab.tasks.image.user import user_sources
from kdlab.training.predict import model_predictor, predict_all


class ImageClassification:
    """Image data sets of the registry (``fashion_mnist``, ``cifar10``, ...) or the user's tensors and loaders; zoo
    models or any ``nn.Module``; every logit, feature, relational and contrastive method."""

    name = "image_classification"
    summary = "images (or any fixed-shape input) → class logits; accuracy, NLL, ECE; agreement, KL, TV with the teacher"

    def check(self, config: Config, command: Command) -> None:
        """Nothing beyond the pipeline's rules: the image task takes every command, torchrun included."""

    def prepare(
        self, config: Config, command: Command, device: torch.device, provided: Provided | None
    ) -> ImageExperiment:
        sources = self._sources(config, command, device, provided)
        teachers = provided.teachers if provided is not None and provided.teachers else None
        main = self._shared(sources, device, teachers or config.teacher, objects=teachers is not None)
        control = None
        if command == "distill" and config.control_teacher:
            control = self._shared(sources, device, config.control_teacher, objects=False)
        student = provided.student if provided is not None else None
        return ImageExperiment(config, command, main, control, student)

    @staticmethod
    def _sources(config: Config, command: Command, device: torch.device, provided: Provided | None) -> Sources:
        data = config.data
        if provided is not None and provided.train is not None:
            return user_sources(
                provided.train,
                provided.test,
                provided.val,
                batch_size=data.batch_size,
                augment=data.augment,
                device=device,
                num_classes=provided.num_classes,
            )
        views = config.cache.views if config.teacher_cache and command != "train" else 0
        return config_sources(data, device, views, config.cache.view_seed)

    @staticmethod
    def _shared(sources: Sources, device: torch.device, teacher: Any, *, objects: bool) -> Shared:
        if not teacher:
            return Shared(sources, device)
        name = describe(teacher) if objects else ", ".join(map(str, teacher))
        return Shared(sources, device, load_teacher(teacher, sources.info, device), name)

    def evaluate(
        self, student: str, teachers: Sequence[str], config: Config, split: str, cka: Sequence[tuple[str, str]]
    ) -> dict[str, dict[str, Any]]:
        return evaluate_models(
            list(teachers) if len(teachers) > 1 else teachers[0],
            student,
            config.data,
            split=split,
            device=resolve_device(config.device),
            cka=cka,
        )


def evaluate_models(
    teacher: TeacherLike,
    student: nn.Module | str,
    data: Any,
    *,
    split: str,
    device: torch.device,
    batch_size: int = 256,
    cka: Sequence[tuple[str, str]] = (),
    cka_examples: int = 2000,
) -> dict[str, dict[str, Any]]:
    """A student's fidelity to a teacher on ``data``: a data-set configuration (its ``split``), or the user's
    tensors, Dataset or DataLoader (all of it). ``{"teacher": {...}, "student": {...}}`` (+ ``"cka"``)."""
    if isinstance(data, DataConfig):
        sources = config_sources(DataConfig(**{**vars(data), "eval_batch_size": batch_size}), device)
    else:
        sources = user_sources(data, data, None, batch_size=batch_size, augment=Augment(), device=device)
        split = "test"
    source, info = sources.split(split), sources.info
    assert source is not None
    t = load_teacher(teacher, info, device)
    s = (teacher_members([student], info, role="student")[0] if isinstance(student, str) else student).to(device)
    check_models([s], info, device, role="The student")
    with eval_mode(s):
        predictors = {"s": model_predictor(s), "t": lambda b: t(b.x).logits}
        logits, targets, _ = predict_all(predictors, source.epoch(0), device)
    result: dict[str, dict[str, Any]] = {
        "teacher": split_metrics(logits["t"], targets, None),
        "student": split_metrics(logits["s"], targets, logits["t"]),
    }
    if cka:
        result["cka"] = layer_cka(s, t, list(cka), source.epoch(0), cka_examples)
    return result


TASKS.register(ImageClassification.name)(ImageClassification())
