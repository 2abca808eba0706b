"""The models of a text job: the teacher (``hf:PATH``, a hub name, or a finished text run), the student (``hf:PATH``,
``{name: hf, config: teacher, num_hidden_layers: 2, ...}``, or a ``PreTrainedModel`` given to the API) and the
tokenizer each reads the text with."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.models import hf
from kdlab.models.factory import OBJECT, ModelSpec

FROM_CONFIG = "hf"  # the student name that builds a fresh model from a configuration
STUDENT_OPTIONS = ("config", "init_layers", "tokenizer")  # the rest of the options edit the configuration


@dataclass
class TextModel:
    """A sequence classifier with the tokenizer it reads text with, and the name it was given as."""

    model: nn.Module
    tokenizer: Any
    name: str


def location(text: str, role: str) -> str:
    """``hf:...`` for a teacher/student string: ``hf:`` names as they are, a text run folder or its ``model.pt``
    as its ``save_pretrained`` folder."""
    return hf.saved_location(
        text, role, task="text_classification", kind="text classifier",
        hint="Text teachers and students are Hugging Face models: hf:PATH to a save_pretrained folder, "
        "hf:all-MiniLM-L6-v2 (shipped), or a run folder written by kdlab train on text data.",
    )  # fmt: skip


def load_teacher(text: str, num_labels: int) -> TextModel:
    """A fine-tuned text teacher (a trained head of ``num_labels`` classes) and its tokenizer."""
    name = location(text, "teacher")
    model = hf.load_classifier(name, num_labels, "teacher", head="trained")
    return TextModel(model, hf.load_tokenizer(name, "teacher"), text)


def student_tokenizer(spec: ModelSpec, teacher: TextModel | None, given: Any = None) -> Any:
    """The tokenizer the student reads with: the API's, the spec's ``tokenizer`` option, the folder it loads from,
    or (built from the teacher's configuration) the teacher's."""
    if given is not None:
        return given
    if spec.name == FROM_CONFIG:
        source = spec.options.get("tokenizer", spec.options.get("config", "teacher"))
        if source == "teacher":
            if teacher is None:
                raise ConfigError("student config: teacher needs a teacher; give config: hf:PATH to build one without.")
            return teacher.tokenizer
        return hf.load_tokenizer(location(str(source), "student tokenizer"), "student tokenizer")
    if spec.name.startswith(OBJECT):
        raise ConfigError("A student given as a Python object needs a tokenizer: pass tokenizer=... to kdlab.")
    return hf.load_tokenizer(location(spec.name, "student"), "student")


def check_student_spec(spec: ModelSpec) -> None:
    """Refuse student names no text job can build (before any data is read)."""
    if spec.name == FROM_CONFIG or spec.name.startswith((hf.HF, OBJECT)):
        return
    if Path(spec.name).exists():
        return
    raise ConfigError(
        f"The student {spec.name!r} is not a text model. Text students are Hugging Face models: student=hf:PATH, "
        "or {name: hf, config: teacher, num_hidden_layers: 2, hidden_size: 192} to build one from the teacher's "
        "configuration (init_layers: every_other copies teacher blocks), or a PreTrainedModel given to kdlab.distill."
    )


def build_student(spec: ModelSpec, num_labels: int, teacher: TextModel | None, given: nn.Module | None) -> nn.Module:
    """A fresh student for one run (the pipeline seeds the RNG first)."""
    if given is not None:
        return copy.deepcopy(given)
    if spec.name == FROM_CONFIG:
        options = dict(spec.options)
        config = options.pop("config", "teacher")
        init_layers = options.pop("init_layers", None)
        options.pop("tokenizer", None)
        if config == "teacher" and teacher is None:
            raise ConfigError("student config: teacher needs a teacher; give config: hf:PATH to build one without.")
        source = "teacher" if config == "teacher" else location(str(config), "student config")
        return hf.student_from_config(
            source,
            num_labels,
            teacher=teacher.model if teacher is not None else None,
            init_layers=init_layers,
            **options,
        )
    if spec.options:
        raise ConfigError(
            f"The student {spec.name!r} loads as it was saved and takes no options (got {sorted(spec.options)}); "
            "to change its shape use {name: hf, config: PATH, num_hidden_layers: ...}."
        )
    return hf.load_classifier(location(spec.name, "student"), num_labels, "student", head="any")


def num_labels_of(model: nn.Module) -> int | None:
    """The number of classes a Hugging Face classifier predicts (None for other modules)."""
    config = getattr(model, "config", None)
    return getattr(config, "num_labels", None)
