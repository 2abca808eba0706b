"""The models of a language-model job: the teacher (``hf:PATH``, a hub name, or a finished ``causal_lm`` run), the
student (``hf:PATH``; ``{name: hf, config: teacher | gpt2 | hf:PATH, n_layer: 2, ...}`` built fresh; or a
``PreTrainedModel`` given to the API) and the one tokenizer both read with."""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any

from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.data.lm import eos_id
from kdlab.models import hf
from kdlab.models.factory import OBJECT, ModelSpec

TASK = "causal_lm"
FROM_CONFIG = "hf"
HINT = (
    "Language-model teachers and students are Hugging Face causal LMs: hf:PATH to a save_pretrained folder, a hub "
    "name while online, or a run folder written by kdlab train on language-model data (e.g. kdlab train "
    "stdlib_gpt2_teacher)."
)


@dataclass
class LMModel:
    """A causal LM with the tokenizer it was saved with (None: none known) and the name it was given as."""

    model: nn.Module
    tokenizer: Any
    name: str


def location(text: str, role: str) -> str:
    return hf.saved_location(text, role, task=TASK, kind="causal language model", hint=HINT)


def quiet(model: nn.Module) -> nn.Module:
    """Training forwards build no key–value cache (generation asks for one explicitly)."""
    config = getattr(model, "config", None)
    if config is not None:
        config.use_cache = False
    return model


def load_teacher(text: str) -> LMModel:
    name = location(text, "teacher")
    return LMModel(quiet(hf.load_causal_lm(name, "teacher")), hf.load_tokenizer(name, "teacher"), text)


def check_student_spec(spec: ModelSpec) -> None:
    """Refuse student names no language-model job can build (before any data is read)."""
    if spec.name == FROM_CONFIG or spec.name.startswith((hf.HF, OBJECT)):
        if spec.options.get("init_layers") is not None:
            raise ConfigError("student init_layers copies encoder blocks; causal language-model students take none.")
        return
    try:
        location(spec.name, "student")
    except ConfigError:
        raise ConfigError(
            f"The student {spec.name!r} is not a language model. Students are Hugging Face causal LMs: "
            "student=hf:PATH, or {name: hf, config: teacher, n_layer: 2} (or config: gpt2 with its fields: n_layer, "
            "n_embd, n_head, n_positions) to build one fresh, or a PreTrainedModel given to kdlab.distill."
        ) from None


def job_tokenizer(spec: ModelSpec, teacher: LMModel | None, given: Any, data_tokenizer: Any) -> Any:
    """The tokenizer of the job: the API's; the student spec's ``tokenizer`` (``hf:PATH``, a run folder, or ``data``:
    the data set's); a student folder's own; the teacher's; or the data set's (``stdlib`` brings a byte-level BPE).
    A teacher that reads with another tokenizer makes the job a cross-tokenizer one."""
    if given is not None:
        return given
    option = spec.options.get("tokenizer")
    if option == "data":
        if data_tokenizer is None:
            raise ConfigError("student tokenizer: data names the data set's tokenizer, but this data set brings none "
                              "(stdlib does); give tokenizer: hf:PATH.")  # fmt: skip
        return data_tokenizer
    if option:
        return hf.load_tokenizer(location(str(option), "student tokenizer"), "student tokenizer")
    if spec.name.startswith(hf.HF) or (spec.name != FROM_CONFIG and not spec.name.startswith(OBJECT)):
        return hf.load_tokenizer(location(spec.name, "student"), "student")
    if teacher is not None and teacher.tokenizer is not None:
        return teacher.tokenizer
    if data_tokenizer is not None:
        return data_tokenizer
    raise ConfigError(
        "No tokenizer for this language-model job: give tokenizer=... (Python API), student: {tokenizer: hf:PATH}, a "
        "teacher saved with its tokenizer, or a data set that brings one (stdlib)."
    )


def special_ids(tokenizer: Any) -> dict[str, int | None]:
    """The end-of-text, beginning and padding ids a fresh model's configuration takes from the tokenizer."""
    eos = eos_id(tokenizer)
    bos = getattr(tokenizer, "bos_token_id", None)
    pad = getattr(tokenizer, "pad_token_id", None)
    return {"eos_token_id": eos, "bos_token_id": bos if bos is not None else eos, "pad_token_id": pad}


def build_student(spec: ModelSpec, tokenizer: Any, teacher: LMModel | None, given: nn.Module | None) -> nn.Module:
    """A fresh student for one run (the pipeline seeds the RNG first)."""
    if given is not None:
        return quiet(copy.deepcopy(given))
    if spec.name == FROM_CONFIG:
        options = dict(spec.options)
        config = options.pop("config", "teacher" if teacher is not None else None)
        options.pop("tokenizer", None)
        if config is None:
            raise ConfigError(
                "A student built from a configuration needs config: teacher, a model type (gpt2) or hf:PATH; "
                "without a teacher give e.g. {name: hf, config: gpt2, n_layer: 4, n_embd: 128, n_head: 4}."
            )
        source = config if config == "teacher" or hf.is_model_type(str(config)) else location(str(config), "config")
        overrides = {k: v for k, v in special_ids(tokenizer).items() if k not in options} | options
        return quiet(hf.student_from_config(
            source, head="causal_lm", vocab_size=len(tokenizer), teacher=teacher.model if teacher else None,
            **overrides,
        ))  # fmt: skip
    if spec.options:
        raise ConfigError(
            f"The student {spec.name!r} loads as it was saved and takes no options (got {sorted(spec.options)}); "
            "to change its shape use {name: hf, config: PATH, n_layer: ...}."
        )
    return quiet(hf.load_causal_lm(location(spec.name, "student"), "student"))


def takes_logits_to_keep(*models: nn.Module | None) -> bool:
    """Whether every model's forward takes ``logits_to_keep`` (Hugging Face causal LMs do, since transformers 4.50):
    then the prompts' logits need not be computed."""
    return all(m is None or "logits_to_keep" in inspect.signature(m.forward).parameters for m in models)


def vocabulary(model: nn.Module) -> int:
    """The width of a causal LM's logits (its output embedding's rows)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and hasattr(head, "weight"):
        return int(head.weight.shape[0])
    return int(getattr(getattr(model, "config", None), "vocab_size", 0))


def positions(model: nn.Module) -> int | None:
    """The longest sequence a model takes (``n_positions`` / ``max_position_embeddings``; None: no limit known)."""
    config = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
