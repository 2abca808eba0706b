"""What ``kdlab analyze`` looks at: a teacher, its students and the independent students, from run folders."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.data.base import DataInfo
from kdlab.data.loader import to_float
from kdlab.models.files import load_model_file, teacher_members
from kdlab.pipeline.config import resolve
from kdlab.runs.folder import RunFolder
from kdlab.tasks.image.sources import config_sources


@dataclass
class Subjects:
    """The models of one analysis. ``students`` are labelled ``METHOD seedN``; ``independent`` holds the
    label-only students in the order given (the first is the reference Ind, the second the control Ind′)."""

    teacher: nn.Module
    teacher_name: str
    students: dict[str, nn.Module]
    independent: dict[str, nn.Module]
    info: DataInfo
    data: dict[str, object]  # the runs' data configuration
    methods: dict[str, str] = field(default_factory=dict)  # label → method name

    def test_images(self, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``limit`` test images (float, [0, 1]) and labels of the runs' data set."""
        config = resolve({"data": self.data})
        source = config_sources(config.data, torch.device("cpu")).test
        if source is None:
            raise ConfigError("The runs' data set has no test split to analyse.")
        return to_float(source.x[:limit]), source.y[:limit]


def _expand(path: Path) -> list[Path]:
    """A run folder, or every member of a run group."""
    if (path / "model.pt").is_file():
        return [path]
    group = path / "group.json"
    if group.is_file():
        return [
            path / m["name"]
            for m in json.loads(group.read_text())["members"]
            if (path / m["name"] / "model.pt").is_file()
        ]
    raise ConfigError(f"{path} is neither a finished run folder (with model.pt) nor a run group (with group.json).")


def load_subjects(paths: list[Path]) -> Subjects:
    """Read every run: students distilled from one and the same teacher, and independent (method ``ce``) runs."""
    runs = [run for path in paths for run in _expand(Path(path))]
    teachers = {RunFolder(r).read_summary().get("teacher", {}).get("name") for r in runs} - {None}
    if len(teachers) != 1:
        raise ConfigError(
            f"kdlab analyze needs students of one teacher; these runs name {len(teachers)} teachers: "
            f"{sorted(teachers) or '(none — give at least one distilled run)'}."
        )
    teacher_name = teachers.pop()
    students: dict[str, nn.Module] = {}
    independent: dict[str, nn.Module] = {}
    methods: dict[str, str] = {}
    info = data = None
    for run in runs:
        summary = RunFolder(run).read_summary()
        model, record = load_model_file(run / "model.pt")
        info = info or DataInfo(
            **{**record["data"], **{k: tuple(record["data"][k]) for k in ("image_size", "mean", "std", "classes")}}
        )
        data = data or RunFolder(run).read_config().get("data", {})
        method = summary.get("method", {}).get("name", "ce")
        label = f"{'ind' if method == 'ce' else method} seed{summary.get('seed', 0)}"
        while label in students or label in independent:
            label += "′"
        (independent if method == "ce" else students)[label] = model.eval()
        methods[label] = method
    if len(independent) < 1:
        raise ConfigError("kdlab analyze needs an independent student (a run of the same student with method=ce).")
    assert info is not None and data is not None
    teacher = teacher_members([teacher_name], info)[0].eval()
    return Subjects(teacher, teacher_name, students, independent, info, dict(data), methods)
