"""Response-level distillation losses on logits (Hinton et al. 2015; Stanton et al. 2021, §3).

Conventions: ``student_logits`` is ``[B, c]``; ``teacher_logits`` is ``[B, c]`` or, for an ensemble of
m members, ``[B, m, c]``; ``temperature`` is a float or a per-example ``[B, 1]`` tensor (different
sources of distillation data may use different temperatures). Every softmax runs in float32 and in
log space, also under autocast.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

Temperature = float | torch.Tensor
EnsembleTemperature = Literal["after_mean", "before_mean"]


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (autocast) are promoted to float32; float32/float64 are kept."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def ensemble_logits(member_logits: torch.Tensor) -> torch.Tensor:
    """Reduce an ensemble to one predictive distribution: ``log((1/m) Σ_i softmax(z_i))``.

    Stanton et al. §3: the ensemble's prediction is the mean of the members' probabilities, not the
    softmax of the mean logits. ``member_logits`` is ``[B, m, c]``; returns log-probabilities ``[B, c]``
    (valid logits: ``softmax`` of the result is the mean probability).
    """
    if member_logits.dim() != 3:
        raise ValueError(f"member_logits must be [B, m, c], got shape {tuple(member_logits.shape)}")
    log_probs = F.log_softmax(at_least_float32(member_logits), dim=-1)
    return torch.logsumexp(log_probs, dim=1) - math.log(member_logits.shape[1])


def teacher_log_probs(
    teacher_logits: torch.Tensor, temperature: Temperature, ensemble: EnsembleTemperature = "after_mean"
) -> torch.Tensor:
    """Tempered teacher log-probabilities ``log σ(z_t/τ)`` ``[B, c]``.

    For an ensemble ``[B, m, c]``, ``ensemble="after_mean"`` tempers the ensemble average,
    ``σ(z̄/τ) ∝ p̄^{1/τ}`` (gnosis' behaviour, the default); ``"before_mean"`` averages the tempered
    members, ``(1/m) Σ_i σ(z_i/τ)``.
    """
    z = at_least_float32(teacher_logits)
    if z.dim() == 3:
        if ensemble == "after_mean":
            z = ensemble_logits(z)
        else:
            tau = temperature.unsqueeze(1) if isinstance(temperature, torch.Tensor) else temperature
            return ensemble_logits(z / tau)
    return F.log_softmax(z / temperature, dim=-1)


def soft_cross_entropy(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: Temperature = 1.0,
    ensemble: EnsembleTemperature = "after_mean",
) -> torch.Tensor:
    """Per-example cross-entropy ``−Σ_j σ_j(z_t/τ) log σ_j(z_s/τ)`` → ``[B]`` (no τ² factor)."""
    log_q = teacher_log_probs(teacher_logits, temperature, ensemble)
    log_p = F.log_softmax(at_least_float32(student_logits) / temperature, dim=-1)
    return -(log_q.exp() * log_p).sum(-1)


def kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: Temperature = 4.0,
    ensemble: EnsembleTemperature = "after_mean",
) -> torch.Tensor:
    """Hinton's distillation loss: ``L = τ² · mean_b [ −Σ_j σ_j(z_t/τ) log σ_j(z_s/τ) ]`` (scalar).

    Hinton, Vinyals & Dean, *Distilling the Knowledge in a Neural Network* (2015), as used by Stanton
    et al. (2021, Eq. 1). The τ² factor keeps the gradient's scale independent of τ (the gradient
    of the soft term scales as 1/τ²). It differs from ``τ²·KL(teacher‖student)`` by the teacher's
    entropy, a constant for the student, so both give the same gradient.
    """
    tau_sq = temperature**2
    per_example = soft_cross_entropy(student_logits, teacher_logits, temperature, ensemble) * (
        tau_sq.reshape(-1) if isinstance(tau_sq, torch.Tensor) else tau_sq
    )
    return per_example.mean()


def kl_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: Temperature = 1.0
) -> torch.Tensor:
    """``mean_b KL(σ(z_t/τ) ‖ σ(z_s/τ))`` (scalar, no τ² factor); zero iff the distributions match."""
    log_q = teacher_log_probs(teacher_logits, temperature)
    log_p = F.log_softmax(at_least_float32(student_logits) / temperature, dim=-1)
    return F.kl_div(log_p, log_q, reduction="batchmean", log_target=True)


def label_cross_entropy(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    mix_perm: torch.Tensor | None = None,
    mix_lambda: float | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Mean cross-entropy with the labels ``[B]``; targets −1 (unlabelled examples) are ignored.

    With mixup (Zhang et al. 2018) the images were ``λ·x + (1−λ)·x[perm]``, so the loss is
    ``λ·CE(y) + (1−λ)·CE(y[perm])``.
    """
    z = at_least_float32(student_logits)
    loss = F.cross_entropy(z, targets, ignore_index=-1, label_smoothing=label_smoothing)
    if mix_perm is None or mix_lambda is None:
        return loss
    mixed = F.cross_entropy(z, targets[mix_perm], ignore_index=-1, label_smoothing=label_smoothing)
    return mix_lambda * loss + (1.0 - mix_lambda) * mixed
