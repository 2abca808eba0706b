"""Figures of ``kdlab analyze`` (PNG files in the output folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdlab.analysis.boundaries import plane_grid
from kdlab.analysis.gradcam import gradcam
from kdlab.analysis.subjects import Subjects
from kdlab.reporting.plotting import pyplot, save_png


def _save(fig: Any, path: Path) -> str:
    return save_png(fig, path, dpi=100)


def _image(x: torch.Tensor) -> Any:
    return x.permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy()


def cam_overlays(s: Subjects, x: torch.Tensor, y: torch.Tensor, out: Path, count: int = 4) -> str:
    models = {"teacher": s.teacher, **dict(list(s.independent.items())[:1]), **s.students}
    plt = pyplot()
    fig, axes = plt.subplots(count, len(models) + 1, figsize=(1.6 * (len(models) + 1), 1.6 * count), squeeze=False)
    for col, (name, model) in enumerate(models.items(), start=1):
        maps = gradcam(model, model.stage_names[-1], x[:count], y[:count])
        axes[0, col].set_title(name, fontsize=7)
        for row in range(count):
            axes[row, col].imshow(_image(x[row]), cmap="gray")
            axes[row, col].imshow(maps[row].numpy(), cmap="jet", alpha=0.45)
    for row in range(count):
        axes[row, 0].imshow(_image(x[row]), cmap="gray")
    axes[0, 0].set_title("image", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    return _save(fig, out / "gradcam.png")


def fooling(results: dict[str, Any], out: Path) -> str:
    plt = pyplot()
    attacks = [k for k in ("teacher_attack", "control_attack") if k in results]
    fig, axes = plt.subplots(1, len(attacks), figsize=(5 * len(attacks), 3.4), squeeze=False)
    for ax, attack in zip(axes[0], attacks, strict=True):
        rates = {k: v for k, v in results[attack].items() if k not in ("attacked", "n")}
        ax.bar(list(rates), list(rates.values()), color="#c44e52")
        ax.set_title(f"crafted on the {'teacher' if attack == 'teacher_attack' else 'control Ind′'}", fontsize=9)
        ax.set_ylabel("fooling rate % (on images that fooled it)")
        ax.tick_params(axis="x", rotation=45, labelsize=7)
    return _save(fig, out / "fooling.png")


def invariance_curves(results: dict[str, Any], out: Path) -> str:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.4), squeeze=False)
    for ax, (kind, curves) in zip(axes[0], results.items(), strict=True):
        for name, values in curves.items():
            if name != "strengths":
                ax.plot(curves["strengths"], values, "o-", label=name, linewidth=2.5 if name == "teacher" else 1.2)
        ax.set_title(kind)
        ax.set_xlabel("strength")
        ax.set_ylabel("agreement f(X) vs f(X′) %")
    axes[0, -1].legend(fontsize=7)
    return _save(fig, out / "invariance.png")


@torch.no_grad()
def boundary_planes(s: Subjects, x: torch.Tensor, out: Path, steps: int = 50) -> str:
    models = {"teacher": s.teacher, **s.independent, **s.students}
    points, _ = plane_grid(x[0], x[1], x[2], steps)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(models), figsize=(1.8 * len(models), 2.0), squeeze=False)
    for ax, (name, model) in zip(axes[0], models.items(), strict=True):
        labels = model.eval()(points).argmax(-1).view(steps, steps)
        ax.imshow(labels.numpy(), cmap="tab10", vmin=0, vmax=9, origin="lower")
        ax.set_title(name, fontsize=7)
        ax.axis("off")
    return _save(fig, out / "boundaries.png")


def cka_heatmaps(results: dict[str, Any], out: Path) -> str:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(2.6 * len(results), 2.6), squeeze=False)
    for ax, (name, entry) in zip(axes[0], results.items(), strict=True):
        ax.imshow(entry["matrix"], vmin=0, vmax=1, cmap="magma")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("student stage", fontsize=7)
        ax.set_ylabel("teacher stage", fontsize=7)
    return _save(fig, out / "cka.png")
