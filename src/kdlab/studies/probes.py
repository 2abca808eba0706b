"""Measurements a study takes on trained runs: CKA between stages, the loss surface of a distillation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdlab.analysis.surface import loss_surface, plot_surface
from kdlab.data import load_dataset
from kdlab.data.loader import to_float
from kdlab.data.split import stratified_subset
from kdlab.losses import kd
from kdlab.metrics import linear_cka, rbf_cka
from kdlab.models.factory import ModelSpec, build_model
from kdlab.models.files import load_model_file, resolve_model_path
from kdlab.studies.runner import StudyContext
from kdlab.training.interpolation import interpolate_from_teacher
from kdlab.training.taps import Taps

PROBE_IMAGES = 1000


def _images(ctx: StudyContext, split: str, n: int) -> torch.Tensor:
    data = load_dataset(ctx.base["data"]["name"])
    x, y = (data.test_x, data.test_y) if split == "test" else (data.train_x, data.train_y)
    return to_float(x[stratified_subset(y, n, 0)])


@torch.no_grad()
def _stages(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    names = list(getattr(model, "stage_names", ()))
    with Taps(model, names) as taps:
        model.eval()(x)
        return taps.collect()


def cka_by_stage(
    students: list[dict[str, Any]], controls: list[dict[str, Any]], ctx: StudyContext
) -> dict[str, dict[str, tuple[float, float]]]:
    """Linear and RBF CKA, per stage, between the teacher and the first seed's student, and between the teacher
    and the first seed's control student, on ``PROBE_IMAGES`` test images."""
    x = _images(ctx, "test", PROBE_IMAGES)
    teacher = load_model_file(resolve_model_path(students[0]["teacher"]["name"])[0])[0]
    reference = _stages(teacher, x)
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for who, runs in (("student", students), ("control", controls)):
        if not runs:
            continue
        model = load_model_file(Path(runs[0]["run_folder"]) / "model.pt")[0]
        for stage, features in _stages(model, x).items():
            pair = (float(linear_cka(reference[stage], features)), float(rbf_cka(reference[stage], features)))
            out.setdefault(stage, {})[who] = pair
    return out


def distillation_surface(
    ctx: StudyContext, teacher_folder: Path, runs: list[dict[str, Any]], student: dict[str, Any], path: Path
) -> str:
    """The KD loss (τ = 4) on 2,000 training images over the plane through the teacher, the first seed's
    initial student (rebuilt exactly as the run built it) and its trained weights; writes ``path``."""
    run = runs[0]
    teacher, record = load_model_file(resolve_model_path(str(teacher_folder))[0])
    final = load_model_file(Path(run["run_folder"]) / "model.pt")[0]
    torch.manual_seed(run["seed"])  # the run seeds torch before building its student
    spec = ModelSpec(student["name"], {k: v for k, v in student.items() if k != "name"})
    from kdlab.data.base import DataInfo  # local: only this probe needs to rebuild the data description

    info = DataInfo(**{**record["data"], **{k: tuple(record["data"][k]) for k in ("image_size", "mean", "std")}})
    init = build_model(spec, info)
    lam = run.get("student_init")
    if lam:
        interpolate_from_teacher(init, teacher, lam)
    x = _images(ctx, "train", 2000)
    with torch.no_grad():
        targets = teacher.eval()(x)

    def loss(model: torch.nn.Module) -> float:
        with torch.no_grad():
            return float(kd(model.eval()(x), targets, 4.0))

    surface = loss_surface(final, teacher.state_dict(), init.state_dict(), final.state_dict(), loss)
    plot_surface(surface, str(path), "KD loss through teacher, init and trained student")
    return path.name
