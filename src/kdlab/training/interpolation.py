"""Student initialisation on the line from a fresh init to the teacher (Stanton et al. 2021, §6.2).

``θ = λ·θ_teacher + (1 − λ)·θ_random``: λ = 1 is the teacher, λ = 0 a fresh random init (gnosis calls
1 − λ the "distance ratio"; kdlab always speaks of λ). BatchNorm running statistics of the mixed
weights are meaningless, so they are recomputed by one no-grad pass in train mode
(:func:`recalibrate_norm_statistics`); integer buffers such as ``num_batches_tracked`` are counters, not
weights, and are never interpolated.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from kdlab.core.errors import ConfigError


def interpolate_state(
    teacher: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor], lam: float
) -> dict[str, torch.Tensor]:
    """``λ·teacher + (1 − λ)·fresh`` for every floating-point tensor of two state dicts of the same
    architecture; other tensors (integer counters) are copied from ``fresh``."""
    if not 0.0 <= lam <= 1.0:
        raise ConfigError(f"The interpolation weight λ must lie in [0, 1] (1 = the teacher), got {lam}.")
    if teacher.keys() != fresh.keys():
        extra = sorted(set(teacher) ^ set(fresh))[:5]
        raise ConfigError(
            "Interpolating from the teacher needs a student of the teacher's architecture; the state dicts "
            f"differ in {extra}. Use the teacher's model as the student (self-distillation)."
        )
    mixed = {}
    for key, value in fresh.items():
        other = teacher[key]
        if other.shape != value.shape:
            raise ConfigError(
                f"Interpolating from the teacher: {key!r} has shape {tuple(other.shape)} in the teacher and "
                f"{tuple(value.shape)} in the student; the student must have the teacher's architecture."
            )
        if value.is_floating_point():
            mixed[key] = torch.lerp(value, other.to(value.dtype), lam)
        else:
            mixed[key] = value.clone()
    return mixed


def _norms_with_statistics(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_norm_statistics(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Recompute every BatchNorm's running mean/variance as the plain average of the per-batch statistics
    over ``batches`` (one pass, BatchNorm in train mode, no gradients, dropout off). Returns the number of BatchNorm
    layers reset — 0 for LayerNorm/GroupNorm nets, which keep no statistics."""
    norms = _norms_with_statistics(model)
    if not norms:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch counts equally, whatever came before
        m.train()
    seen = 0
    for x in batches:
        model(x)
        seen += 1
    if seen == 0:
        raise ConfigError("BatchNorm recalibration needs at least one batch of training data.")
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.train(was_training)
    return len(norms)


def interpolate_from_teacher(
    student: nn.Module, teacher: nn.Module, lam: float, batches: Iterable[torch.Tensor] | None = None
) -> nn.Module:
    """Set ``student`` (freshly initialised) to ``λ·teacher + (1 − λ)·student`` in place, then recompute
    its BatchNorm statistics over ``batches`` when given. Returns ``student``."""
    student.load_state_dict(interpolate_state(teacher.state_dict(), student.state_dict(), lam))
    if batches is not None:
        recalibrate_norm_statistics(student, batches)
    return student
