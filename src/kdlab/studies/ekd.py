"""``kdlab study ekd``: depth-level dynamic networks with embedded KD (Embedded Knowledge Distillation in Depth-Level
Dynamic Neural Network), small scale.

Five conditions on one depth-switchable CIFAR ResNet family (ResNet-8 ⊂ 14 ⊂ 20 by default), Fashion-MNIST:
(a) each depth trained alone; (b) the sub-nets and the full net trained jointly with labels only; (c) joint +
KL from the full net; (d) full EKD (joint + KL + attention); (e) offline KD from the trained full net of (a)
into each separately trained sub-net. Every run goes through the ordinary workflow (``kdlab train`` /
``kdlab distill``), so each has its folder, checkpoints and index row and a second invocation reuses them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from kdlab.core.errors import ConfigError, suggest
from kdlab.core.modes import eval_mode
from kdlab.models.files import load_model_file
from kdlab.pipeline.config import resolve
from kdlab.runs.folder import RunFolder
from kdlab.runs.summaries import student_key
from kdlab.studies.runner import StudyContext
from kdlab.tasks.image.depths import export
from kdlab.tasks.image.sources import config_sources
from kdlab.training.predict import model_predictor, predict_all


@dataclass(frozen=True)
class EKDScale:
    train_size: int | None
    test_size: int | None
    epochs: int
    seeds: tuple[int, ...]
    depths: tuple[int, ...]
    width: int
    batch_size: int = 128


PRESETS = {
    "smoke": EKDScale(train_size=400, test_size=200, epochs=1, seeds=(0,), depths=(8, 14), width=4, batch_size=100),
    "quick": EKDScale(train_size=10_000, test_size=None, epochs=8, seeds=(0, 1, 2), depths=(8, 14, 20), width=8),
}
JOINT = {
    "joint_ce": {"name": "ekd", "kl_weight": 0.0, "attention": "none"},
    "joint_kl": {"name": "ekd", "attention": "none"},
    "ekd": {"name": "ekd"},
    # the attention term's form and weight are our reconstruction (only the EKD paper's abstract is public): two
    # variants
    "ekd_sad": {"name": "ekd", "attention": "sad"},
    "ekd_at50": {"name": "ekd", "attention_weight": 50.0},
}
OFFLINE_KD = {"name": "kd", "temperature": 3.0, "ce_weight": 0.5}  # CE : τ²·KL = 1 : 1, as in EKD
CONDITIONS = ("alone", *JOINT, "offline_kd")

Figures = dict[str, dict[int, list[dict[str, Any]]]]  # condition → depth → one figures dict per seed


def base_config(scale: EKDScale) -> dict[str, Any]:
    return {
        "data": {
            "name": "fashion_mnist",
            "train_size": scale.train_size,
            "test_size": scale.test_size,
            "batch_size": scale.batch_size,
        },
        "student": {
            "name": "ddnn_resnet",
            "depths": list(scale.depths),
            "width": scale.width,
            "stem_width": scale.width,
        },
        "optim": {
            "name": "sgd",
            "lr": 0.1,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 5e-4,
            "schedule": "cosine",
        },
        "epochs": scale.epochs,
        "eval_every": scale.epochs,
        "seeds": list(scale.seeds),
        "independent": False,
    }


def _depth_runs(summaries: dict[str, list[dict[str, Any]]], depth: int) -> list[dict[str, Any]]:
    runs = summaries["main"]
    return [r[student_key(r)]["depths"][str(depth)] | {"train_time_s": r["train_time_s"]} for r in runs]


def run_conditions(ctx: StudyContext, scale: EKDScale) -> tuple[Figures, dict[str, str]]:
    """Train (or reuse) every condition; returns the figures and one run folder per joint condition (seed 0)."""
    figures: Figures = {c: {} for c in CONDITIONS}
    full, subs = max(scale.depths), sorted(scale.depths)[:-1]
    for d in scale.depths:
        summaries = ctx.train("alone", f"d{d}", {"student": {"depths": [d]}, "method": {"name": "ce"}})
        figures["alone"][d] = _depth_runs(summaries, d)
    folders = {}
    for name, method in JOINT.items():
        summaries = ctx.train("joint", name, {"method": method})
        folders[name] = summaries["main"][0]["run_folder"]
        for d in scale.depths:
            figures[name][d] = _depth_runs(summaries, d)
    grouped = len(scale.seeds) > 1
    for d in subs:
        figures["offline_kd"][d] = []
        for seed in scale.seeds:
            teacher = ctx.folder / "runs" / "alone" / f"d{full}" / (f"seed{seed}" if grouped else "")
            settings = {"teacher": str(teacher), "seeds": [seed], "student": {"depths": [d]}, "method": OFFLINE_KD}
            summaries = ctx.distill("offline_kd", f"d{d}-seed{seed}", settings)
            figures["offline_kd"][d] += _depth_runs(summaries, d)
    return figures, folders


def switch_check(run: Path) -> dict[str, float]:
    """Per depth, on the run's test set: how far apart (as a share of the test images) the correct counts of the
    switchable model at that depth, of its exported plain model and of the recorded accuracy are (0: exact)."""
    model, record = load_model_file(run / "model.pt")
    config = resolve(RunFolder(run).read_config())
    sources = config_sources(config.data, torch.device("cpu"))
    assert sources.test is not None
    out = {}
    for d in model.depths:
        plain, _ = export(model, d, sources.info)
        predictors = {"switch": lambda b, d=d: model(b.x, depth=d), "plain": model_predictor(plain)}
        with eval_mode(model), eval_mode(plain):
            logits, targets, _ = predict_all(predictors, sources.test.epoch(0), torch.device("cpu"))
        correct = {k: int((v.argmax(1) == targets).sum()) for k, v in logits.items()}
        recorded = round(record["metrics"]["depths"][str(d)]["accuracy"] * len(targets))  # stored as a fraction
        out[str(d)] = (abs(correct["switch"] - correct["plain"]) + abs(correct["switch"] - recorded)) / len(targets)
    return out


def run_study(preset: str, folder: Path, progress: bool = True, overrides: list[str] | None = None) -> Path:
    """Run the preset into ``folder`` and write report.md, report.html, results.json and the figure."""
    from kdlab.studies.ekd_report import write

    if preset not in PRESETS:
        raise ConfigError(
            f"Unknown ekd study preset {preset!r}.{suggest(preset, PRESETS)} Valid: {', '.join(PRESETS)}."
        )
    scale = PRESETS[preset]
    ctx = StudyContext(folder, base_config(scale), progress, list(overrides or []))
    figures, folders = run_conditions(ctx, scale)
    checks = {name: switch_check(Path(run)) for name, run in folders.items()}
    write(folder, preset, asdict(scale), figures, checks, sum(ctx.used.values()), len(ctx.used))
    return folder
