"""Logit losses that take the teacher's distribution apart: DKD (Zhao et al. 2022) and DIST (Huang et al. 2022).

Conventions as in :mod:`kdlab.losses.logits`: ``student_logits`` ``[B, c]``; ``teacher_logits`` ``[B, c]`` or an
ensemble ``[B, m, c]`` (reduced by :func:`teacher_log_probs`); softmaxes in float32 or better, in log space.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.losses.logits import (
    EnsembleTemperature,
    Temperature,
    at_least_float32,
    tau_squared,
    teacher_log_probs,
    tempered_log_softmax,
)


def _binary_and_rest(log_probs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log b`` ``[B, 2]`` (target, all non-target classes) and ``log p̂`` ``[B, c−1]`` (the non-target classes,
    renormalised) from log-probabilities ``[B, c]``."""
    c = log_probs.shape[-1]
    # the c−1 non-target class indices of each row, without boolean masking (no host sync on GPU)
    k = torch.arange(c - 1, device=log_probs.device)
    others = k + (k >= target.unsqueeze(-1)).long()
    log_rest = log_probs.gather(-1, others)
    log_non_target = torch.logsumexp(log_rest, dim=-1, keepdim=True)
    log_b = torch.cat([log_probs.gather(-1, target.unsqueeze(-1)), log_non_target], dim=-1)
    return log_b, log_rest - log_non_target


def _kl(log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """``KL(q‖p)`` per row from log-probabilities."""
    return (log_q.exp() * (log_q - log_p)).sum(-1)


def dkd_parts(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    temperature: Temperature = 4.0,
    ensemble: EnsembleTemperature = "after_mean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example TCKD and NCKD ``[B]`` (no τ²) of Zhao et al., *Decoupled Knowledge Distillation*, CVPR 2022.

    With ``p = σ(z/τ)``, ``b = (p_gt, 1 − p_gt)`` and ``p̂_j = p_j / (1 − p_gt)`` for ``j ≠ gt``:
    ``TCKD = KL(b_t‖b_s)``, ``NCKD = KL(p̂_t‖p̂_s)``; they decompose KD exactly (Eq. 1–3):
    ``KL(p_t‖p_s) = TCKD + (1 − p_t,gt) · NCKD``. ``target`` ``[B]`` holds class indices (all ≥ 0).
    """
    log_q = teacher_log_probs(teacher_logits, temperature, ensemble)
    log_p = tempered_log_softmax(student_logits, temperature)
    log_bq, log_rest_q = _binary_and_rest(log_q, target)
    log_bp, log_rest_p = _binary_and_rest(log_p, target)
    return _kl(log_bq, log_bp), _kl(log_rest_q, log_rest_p)


def dkd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: Temperature = 4.0,
    ensemble: EnsembleTemperature = "after_mean",
) -> torch.Tensor:
    """Decoupled KD ``τ² · mean_b [ α · TCKD + β · NCKD ]`` (scalar; Zhao et al. 2022, Eq. 4).

    Unlike KD, NCKD is not down-weighted by the teacher's non-target mass ``1 − p_t,gt``. Defaults are the
    paper's CIFAR-100 setting (α = 1, β = 8, τ = 4). A ``[B, 1]`` temperature scales each example by its τ².
    """
    tckd, nckd = dkd_parts(student_logits, teacher_logits, target, temperature, ensemble)
    return ((alpha * tckd + beta * nckd) * tau_squared(temperature)).mean()


def pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (``[N, d]`` → ``[N]``).

    ``eps`` guards constant rows (as in the DIST code, added to the product of the norms).
    """
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + eps)


def inter_class_relation(student_probs: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """DIST inter-class relation ``1 − mean_i ρ(p_s,i, p_t,i)`` over the examples' class vectors ``[B, c]``."""
    return 1.0 - pearson(student_probs, teacher_probs).mean()


def intra_class_relation(student_probs: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """DIST intra-class relation ``1 − mean_j ρ(p_s,:j, p_t,:j)``: each class's column over the batch ``[B, c]``."""
    return inter_class_relation(student_probs.transpose(0, 1), teacher_probs.transpose(0, 1))


def dist(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    beta: float = 1.0,
    gamma: float = 1.0,
    temperature: float = 4.0,
    ensemble: EnsembleTemperature = "after_mean",
) -> torch.Tensor:
    """DIST ``τ² · (β · inter + γ · intra)`` on ``p = σ(z/τ)`` (scalar).

    Huang et al., *Knowledge Distillation from a Stronger Teacher*, NeurIPS 2022: match the teacher's
    predictions up to an affine map (Pearson correlation) per example (inter-class) and per class across the
    batch (intra-class). The intra-class term mixes examples, so τ is one number here (no ``[B, 1]``).
    """
    q = teacher_log_probs(teacher_logits, temperature, ensemble).exp()
    p = F.softmax(at_least_float32(student_logits) / temperature, dim=-1)
    return tau_squared(temperature) * (beta * inter_class_relation(p, q) + gamma * intra_class_relation(p, q))
