"""Model files: the trained weights with what rebuilds them (``model.pt`` of a run folder, the shipped teachers), and
the teacher specifications a configuration lists (``pretrained:NAME``, run folders, run groups, files)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from kdlab.core import files
from kdlab.core.errors import CheckpointError, ConfigError, suggest
from kdlab.data.base import DataInfo
from kdlab.models.factory import ModelSpec, build_model

ZOO = Path(__file__).resolve().parents[1] / "zoo"
MODEL_FILE = "model.pt"
GROUP_FILE = "group.json"


def pretrained_names() -> list[str]:
    return sorted(p.stem for p in ZOO.glob("*.pt"))


def save_model_file(
    path: Path,
    model: nn.Module,
    spec: ModelSpec | None,
    info: DataInfo | None,
    metrics: dict[str, Any] | None = None,
) -> None:
    """Write the trained weights with what is needed to rebuild them (``kdlab train`` → a teacher)."""
    files.save(
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
    record = files.load(path, what="model file")
    if record.get("sequence"):
        raise CheckpointError(
            f"{path} holds a tagger or parser (a model of a sentence data set); use it with that kind of data "
            "(e.g. data.name=turkish_pos)."
        )
    if record.get("format") != "kdlab-model" or not record.get("model") or not record.get("data"):
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
            "shape": tuple(data.get("shape", ())),
        }
    )


def _load_state(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"The weights in {path} do not fit the model {type(model).__name__}: {first}") from None


def resolve_model_path(text: str, role: str = "teacher") -> list[Path]:
    """The model file(s) a ``role`` (teacher, student, model) string names: ``pretrained:NAME``, a run folder, a
    group folder (its main runs), a file."""
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
        try:
            members = json.loads((path / GROUP_FILE).read_text())["members"]
            paths = [path / m["name"] / MODEL_FILE for m in members if m["role"] == "main"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path / GROUP_FILE} is damaged ({type(exc).__name__}: {exc}).") from None
        missing = [str(f) for f in paths if not f.is_file()]
        if missing:
            raise ConfigError(f"The run group {path} is not finished: no model file {missing[0]}.")
        return paths
    raise ConfigError(
        f"The {role} {text!r} is not a model file, a finished run folder (with {MODEL_FILE}) or a run group. "
        f"Give pretrained:NAME ({', '.join(pretrained_names()) or 'none shipped'}), a path written by kdlab "
        "train, or {name: ARCH, checkpoint: PATH}."
    )


def teacher_members(specs: Sequence[Any], info: DataInfo, role: str = "teacher") -> list[nn.Module]:
    """Build every model a config lists as ``role`` (a run group counts as all its seeds)."""
    if not specs:
        raise ConfigError("kdlab distill needs a teacher: teacher=pretrained:NAME, a run folder, or a list of them.")
    members: list[nn.Module] = []
    for spec in specs:
        if isinstance(spec, str):
            members += [load_model_file(p)[0] for p in resolve_model_path(spec, role)]
        elif isinstance(spec, dict) and "name" in spec:
            options = {k: v for k, v in spec.items() if k not in ("name", "checkpoint")}
            model = build_model(ModelSpec(spec["name"], options), info, where="teacher")
            if spec.get("checkpoint"):
                state = files.load(Path(spec["checkpoint"]), what="teacher checkpoint")
                _load_state(model, state.get("state_dict", state), Path(spec["checkpoint"]))
            members.append(model)
        else:
            raise ConfigError(f"Teacher entry {spec!r} is neither a path/pretrained name nor {{name: ARCH, ...}}.")
    return members


