"""From names and paths to modules: zoo models, callables, model files and teachers."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.core import files as checkpoint
from kdlab.core.errors import CheckpointError, ConfigError, suggest
from kdlab.core.typecheck import check_kwargs
from kdlab.data.base import DataInfo
from kdlab.models import MODELS
from kdlab.training.predict import eval_mode
from kdlab.training.teachers import Teacher

ZOO = Path(__file__).resolve().parents[1] / "zoo"
MODEL_FILE = "model.pt"
GROUP_FILE = "group.json"
_DATA_KEYS = ("num_classes", "in_channels", "image_size", "mean", "std")



@dataclass
class ModelSpec:
    """A zoo model name (or ``package.module:callable``) and its keyword options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


def pretrained_names() -> list[str]:
    return sorted(p.stem for p in ZOO.glob("*.pt"))


def builder(name: str) -> Any:
    """The zoo builder, or the callable named ``package.module:attribute``."""
    if ":" not in name:
        return MODELS.get(name)
    module_name, _, attr = name.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"Cannot import model {name!r} ({exc}). Use package.module:callable, importable here."
        ) from None
    if not callable(obj):
        raise ConfigError(f"Model {name!r} is not callable.")
    return obj


def check_spec(spec: ModelSpec, where: str) -> dict[str, Any]:
    """Check a model's name and options without building it; returns the checked options."""
    return check_kwargs(builder(spec.name), spec.options, f"{where} {spec.name!r}")


def build_model(spec: ModelSpec, info: DataInfo, where: str = "student") -> nn.Module:
    """Build ``spec`` for data described by ``info`` (classes, channels, size and pixel statistics)."""
    fn = builder(spec.name)
    options = check_spec(spec, where)
    data = {
        "num_classes": info.num_classes,
        "in_channels": info.in_channels,
        "image_size": tuple(info.image_size),
        "mean": tuple(info.mean),
        "std": tuple(info.std),
    }
    accepted = inspect.signature(fn).parameters
    data = {k: v for k, v in data.items() if k in accepted and k not in options}
    model = fn(**data, **options)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{where} {spec.name!r} returned a {type(model).__name__}, not an nn.Module.")
    return model


def save_model_file(
    path: Path,
    model: nn.Module,
    spec: ModelSpec | None,
    info: DataInfo | None,
    metrics: dict[str, Any] | None = None,
) -> None:
    """Write the trained weights with what is needed to rebuild them (``kdlab train`` → a teacher)."""
    checkpoint.save(
        {
            "format": "kdlab-model",
            "version": 1,
            "model": None if spec is None else {"name": spec.name, "options": spec.options},
            "data": None if info is None else dataclasses.asdict(info),
            "state_dict": model.state_dict(),
            "metrics": metrics or {},
        },
        path,
    )


def load_model_file(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved in a kdlab model file; returns it with the file's record."""
    record = checkpoint.load(path, what="model file")
    if record.get("format") != "kdlab-model" or not record.get("model"):
        raise CheckpointError(
            f"{path} is not a kdlab model file with a model description (written by kdlab train/distill). "
            "For a bare state_dict give the architecture: teacher: {name: ARCH, checkpoint: PATH}."
        )
    info = record_info(record)
    model = build_model(ModelSpec(**record["model"]), info, where=f"model in {path}")
    _load_state(model, record["state_dict"], path)
    return model, record


def record_info(record: dict[str, Any]) -> DataInfo:
    """The data description stored in a kdlab model file."""
    data = record["data"]
    return DataInfo(
        **{
            **data,
            "image_size": tuple(data["image_size"]),
            "mean": tuple(data["mean"]),
            "std": tuple(data["std"]),
            "classes": tuple(data.get("classes", ())),
        }
    )


def _load_state(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"The weights in {path} do not fit the model {type(model).__name__}: {first}") from None


def resolve_model_path(text: str) -> list[Path]:
    """The model file(s) a teacher string names: ``pretrained:NAME``, a run folder, a group folder, a file."""
    if text.startswith("pretrained:"):
        name = text.split(":", 1)[1]
        if name not in pretrained_names():
            raise ConfigError(
                f"Unknown pretrained model {name!r}.{suggest(name, pretrained_names())} "
                f"Available: {', '.join(pretrained_names()) or '(none)'}."
            )
        return [ZOO / f"{name}.pt"]
    path = Path(text)
    if path.is_file():
        return [path]
    if (path / MODEL_FILE).is_file():
        return [path / MODEL_FILE]
    if (path / GROUP_FILE).is_file():
        import json

        members = json.loads((path / GROUP_FILE).read_text())["members"]
        files = [path / m["name"] / MODEL_FILE for m in members if m["role"] == "main"]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ConfigError(f"The run group {path} is not finished: no model file {missing[0]}.")
        return files
    raise ConfigError(
        f"Teacher {text!r} is not a model file, a finished run folder (with {MODEL_FILE}) or a run group. "
        f"Give pretrained:NAME ({', '.join(pretrained_names()) or 'none shipped'}), a path written by kdlab "
        "train, or {name: ARCH, checkpoint: PATH}."
    )


def teacher_members(specs: Sequence[Any], info: DataInfo) -> list[nn.Module]:
    """Build every teacher model a config lists (a run group counts as all its seeds)."""
    if not specs:
        raise ConfigError("kdlab distill needs a teacher: teacher=pretrained:NAME, a run folder, or a list of them.")
    members: list[nn.Module] = []
    for spec in specs:
        if isinstance(spec, str):
            members += [load_model_file(p)[0] for p in resolve_model_path(spec)]
        elif isinstance(spec, dict) and "name" in spec:
            options = {k: v for k, v in spec.items() if k not in ("name", "checkpoint")}
            model = build_model(ModelSpec(spec["name"], options), info, where="teacher")
            if spec.get("checkpoint"):
                state = checkpoint.load(Path(spec["checkpoint"]), what="teacher checkpoint")
                _load_state(model, state.get("state_dict", state), Path(spec["checkpoint"]))
            members.append(model)
        else:
            raise ConfigError(f"Teacher entry {spec!r} is neither a path/pretrained name nor {{name: ARCH, ...}}.")
    return members


def check_teacher(teacher: Teacher, info: DataInfo, device: torch.device) -> None:
    """A teacher must accept the data's images and predict the data's classes."""
    check_models(list(teacher.members), info, device, role="Teacher model")


def check_models(models: Sequence[nn.Module], info: DataInfo, device: torch.device, *, role: str) -> None:
    """Each model must accept the data's images and predict the data's classes (probed with a zero batch)."""
    x = torch.zeros(2, info.in_channels, *info.image_size, device=device)
    for i, member in enumerate(models):
        try:
            with torch.no_grad(), eval_mode(member):
                out = member(x)
        except RuntimeError as exc:
            raise ConfigError(
                f"{role} {i} ({type(member).__name__}) cannot take {info.name} images of "
                f"shape {tuple(x.shape[1:])}: {str(exc).splitlines()[0]}"
            ) from None
        if out.shape[-1] != info.num_classes:
            raise ConfigError(
                f"{role} {i} ({type(member).__name__}) predicts {out.shape[-1]} classes but the data set "
                f"{info.name!r} has {info.num_classes}; use a model made for the same classes."
            )
