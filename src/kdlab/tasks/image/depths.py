"""Depth-switchable networks after training: BatchNorm recalibration, figures for every depth, export.

For every depth of a :class:`~kdlab.models.depth.DepthSwitch` model: accuracy/NLL/ECE, agreement and KL with
its own full net (what the sub-net took from it) and with the teacher when there is one, parameters and
multiply-adds of that depth's plain network, and its CPU latency per image (batch 1). :func:`export` turns one
depth into the plain zoo model it is (a ``resnet``/``resnet_basic``/``vgg`` with the kept blocks' weights and
that depth's BatchNorm statistics) — a kdlab model file any kdlab command, or ``torch.load`` + the zoo, reads.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.modes import eval_mode
from kdlab.data.base import DataInfo
from kdlab.metrics.fidelity import split_metrics
from kdlab.models import count_macs, count_parameters
from kdlab.models.depth import DepthSwitch
from kdlab.models.depth_norms import norm_state
from kdlab.models.factory import ModelSpec, build_model
from kdlab.models.files import load_model_file, record_info, save_model_file
from kdlab.training.predict import predict_all

EXPORT_TOLERANCE = 1e-4


def _switchable_path(model: DepthSwitch, depth: int, path: str) -> str:
    """The module of the switchable model that a plain sub-net's module ``path`` came from."""
    parts = path.split(".")
    if parts[0] in model.stage_names and len(parts) > 1:  # type: ignore[attr-defined]
        stage = getattr(model, parts[0])
        block, offset = divmod(int(parts[1]), stage.unit)
        parts[1] = str(stage.plan[depth][block] * stage.unit + offset)
    return ".".join(parts)


def _input_statistics(model: DepthSwitch, info: DataInfo) -> dict[str, Any]:
    """``mean``/``std`` options when the model normalises its input otherwise than the data's statistics say."""
    norm = model.normalize  # type: ignore[attr-defined]
    if norm.mean is None:
        return {"mean": None, "std": None}
    mean, std = tuple(norm.mean.flatten().tolist()), tuple(norm.std.flatten().tolist())
    if torch.allclose(norm.mean.flatten().cpu(), torch.tensor(info.mean)) and torch.allclose(
        norm.std.flatten().cpu(), torch.tensor(info.std)
    ):
        return {}
    return {"mean": mean, "std": std}


def export(model: DepthSwitch, depth: int | str, info: DataInfo) -> tuple[nn.Module, ModelSpec]:
    """Sub-net ``depth`` of ``model`` as a plain zoo network with copied weights; returns it and its spec."""
    d = model.check_depth(depth)
    name, options = model.static_spec(d)
    spec = ModelSpec(name, {**options, **_input_statistics(model, info)})
    plain = build_model(spec, info, where="exported sub-net")
    state: dict[str, torch.Tensor] = {}
    for path, module in plain.named_modules():
        if next(module.children(), None) is not None:
            continue
        source = model.get_submodule(_switchable_path(model, d, path))
        local = norm_state(source, d) if isinstance(module, nn.BatchNorm2d) else source.state_dict()
        state.update({f"{path}.{k}" if path else k: v.detach().clone() for k, v in local.items()})
    plain.load_state_dict(state)
    return plain.to(next(model.parameters()).device), spec


@torch.no_grad()
def export_gap(model: DepthSwitch, plain: nn.Module, depth: int, x: torch.Tensor) -> float:
    """Largest absolute difference of the logits of ``plain`` and of ``model`` at ``depth`` on ``x``."""
    with eval_mode(model), eval_mode(plain):
        return float((model(x, depth=depth) - plain(x)).abs().max())


def export_run(run: Path, depth: str, out: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """``kdlab export RUN depth=K``: write sub-net K of the run's switchable model as a kdlab model file."""
    path = run / "model.pt" if run.is_dir() else run
    if not path.is_file():
        raise ConfigError(f"{run} is neither a finished run folder (with model.pt) nor a model file.")
    model, record = load_model_file(path)
    if not isinstance(model, DepthSwitch):
        raise ConfigError(
            f"The model in {path} ({record['model']['name']}) is not depth-switchable; kdlab export takes runs "
            "of ddnn_resnet, ddnn_resnet_basic or ddnn_vgg."
        )
    d = model.check_depth(depth)
    info = record_info(record)
    plain, spec = export(model, d, info)
    probe = torch.rand(8, info.in_channels, *info.image_size, generator=torch.Generator().manual_seed(0))
    gap = export_gap(model, plain, d, probe)
    if gap > EXPORT_TOLERANCE:  # a bug, not a user mistake
        raise RuntimeError(f"exported depth {d} differs from the switchable model by {gap:.2e}")
    metrics = record.get("metrics", {}).get("depths", {}).get(str(d), {})
    target = out or (path.parent / f"depth{d}.pt")
    save_model_file(target, plain, spec, info, metrics)
    shape = (info.in_channels, *info.image_size)
    about = {
        "depth": d,
        "model": spec.name,
        "options": spec.options,
        "parameters": count_parameters(plain),
        "macs": count_macs(plain, shape),
        "max_abs_diff": gap,
    }
    return target, about


def latency_ms(model: nn.Module, shape: tuple[int, ...], runs: int = 30) -> float:
    """Median CPU wall time (ms) of one forward pass on one image, in eval mode without grad."""
    cpu = copy.deepcopy(model).cpu().eval()
    x = torch.rand(1, *shape)
    times = []
    with torch.no_grad():
        for i in range(runs + 5):
            start = time.perf_counter()
            cpu(x)
            if i >= 5:
                times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1e3, 4)


def calibration_images(batches: Iterable[Batch], count: int) -> Iterator[torch.Tensor]:
    """The first ``count`` images of ``batches`` (training images, no augmentation)."""
    seen = 0
    for batch in batches:
        if seen >= count:
            return
        yield batch.x[: count - seen]
        seen += len(batch.x)


def depth_figures(
    model: DepthSwitch,
    test: Callable[[], Iterable[Batch]],
    info: DataInfo,
    device: torch.device,
    *,
    calibration: Iterable[Batch] | None = None,
    teacher_logits: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{depth: figures}`` on the ``test`` batches; with ``calibration`` (and ``bn="recalibrated"``), the
    sub-nets' BatchNorm statistics are recalibrated first on those images, and their accuracy with the full
    net's statistics is kept as ``accuracy_full_bn`` (what shared statistics would give)."""
    before: dict[int, float] = {}
    if calibration is not None and model.bn == "recalibrated":
        subs = [d for d in model.depths if d != model.full_depth]
        logits, targets, _ = _predict(model, subs, test(), device)
        before = {d: split_metrics(logits[d], targets, None)["accuracy"] for d in subs}
        model.recalibrate(calibration_images(calibration, model.recalibration_images))
    logits, targets, index = _predict(model, list(model.depths), test(), device)
    full = logits[model.full_depth]
    teacher = teacher_logits(index) if teacher_logits is not None else None
    shape = (info.in_channels, *info.image_size)
    out: dict[str, dict[str, Any]] = {}
    for d in model.depths:
        figures: dict[str, Any] = split_metrics(logits[d], targets, teacher)
        own = split_metrics(logits[d], None, full)
        figures.update({"full_agreement": own["agreement"], "full_kl": own["kl"]})
        if d in before:
            figures["accuracy_full_bn"] = before[d]
        plain, _ = export(model, d, info)
        figures.update(
            blocks=list(model.budgets[d]),
            parameters=count_parameters(plain),
            macs=count_macs(plain, shape),
            latency_ms=latency_ms(plain, shape),
        )
        out[str(d)] = figures
    return out


def _predict(
    model: DepthSwitch, depths: list[int], batches: Iterable[Batch], device: torch.device
) -> tuple[dict[int, torch.Tensor], torch.Tensor, torch.Tensor]:
    predictors = {str(d): (lambda b, d=d: model(b.x, depth=d)) for d in depths}
    with eval_mode(model):
        logits, targets, index = predict_all(predictors, batches, device)
    return {int(k): v for k, v in logits.items()}, targets, index
