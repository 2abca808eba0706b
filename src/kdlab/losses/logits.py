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


def tau_squared(temperature: Temperature) -> float | torch.Tensor:
    """τ², the factor that keeps a tempered loss's gradient scale independent of τ: a float, or per example ``[B]``
    for a ``[B, 1]`` temperature."""
    return temperature.reshape(-1) ** 2 if isinstance(temperature, torch.Tensor) else temperature**2


def tempered_log_softmax(logits: torch.Tensor, temperature: Temperature) -> torch.Tensor:
    """``log σ(z/τ)`` over the last dimension, in float32 or better (also under autocast)."""
    return F.log_softmax(at_least_float32(logits) / temperature, dim=-1)


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
    return tempered_log_softmax(z, temperature)


def soft_cross_entropy(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: Temperature = 1.0,
    ensemble: EnsembleTemperature = "after_mean",
) -> torch.Tensor:
    """Per-example cross-entropy ``−Σ_j σ_j(z_t/τ) log σ_j(z_s/τ)`` → ``[B]`` (no τ² factor)."""
    log_q = teacher_log_probs(teacher_logits, temperature, ensemble)
    return -(log_q.exp() * tempered_log_softmax(student_logits, temperature)).sum(-1)


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
    per_example = soft_cross_entropy(student_logits, teacher_logits, temperature, ensemble)
    return (per_example * tau_squared(temperature)).mean()


def kl_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: Temperature = 1.0
) -> torch.Tensor:
    """``mean_b KL(σ(z_t/τ) ‖ σ(z_s/τ))`` (scalar, no τ² factor); zero iff the distributions match."""
    log_q = teacher_log_probs(teacher_logits, temperature)
    log_p = tempered_log_softmax(student_logits, temperature)
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


# --- the other response-level losses of gnosis (Stanton et al. 2021; the gnosis code) -----------------------------

HardLabels = Literal["argmax", "sample"]


def reverse_kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: Temperature = 4.0,
    ensemble: EnsembleTemperature = "after_mean",
) -> torch.Tensor:
    """Reverse cross-entropy ``τ² · mean_b [ −Σ_j σ_j(z_s/τ) log σ_j(z_t/τ) ]`` (scalar).

    gnosis ``TeacherStudentRevCrossEntLoss`` (Stanton et al. 2021): the student's
    distribution weighs the teacher's log-probabilities, so the student is mode-seeking. Shapes as in
    the module docstring; ``[B, 1]`` temperatures scale each example by its own τ².
    """
    log_q = teacher_log_probs(teacher_logits, temperature, ensemble)
    p = tempered_log_softmax(student_logits, temperature).exp()
    return (-(p * log_q).sum(-1) * tau_squared(temperature)).mean()


def symmetric_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: Temperature = 4.0,
    ensemble: EnsembleTemperature = "after_mean",
) -> torch.Tensor:
    """``mean_b [ KL(q‖p) + KL(p‖q) ]`` with ``q = σ(z_t/τ)``, ``p = σ(z_s/τ)``; no τ² (scalar).

    gnosis ``SymmetrizedKLLoss`` (Stanton et al. 2021). Per example the sum is
    ``Σ_j (q_j − p_j)(log q_j − log p_j)``
    (Jeffreys divergence), zero iff ``p = q``.
    """
    log_q = teacher_log_probs(teacher_logits, temperature, ensemble)
    log_p = tempered_log_softmax(student_logits, temperature)
    return ((log_q.exp() - log_p.exp()) * (log_q - log_p)).sum(-1).mean()


def brier(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: Temperature = 4.0,
    ensemble: EnsembleTemperature = "after_mean",
) -> torch.Tensor:
    """Brier distance ``mean_{b,j} (σ_j(z_s/τ) − σ_j(z_t/τ))²`` — mean over classes AND examples; no τ².

    gnosis ``BrierLoss`` (``F.mse_loss`` of the probabilities; gnosis, Stanton et al. 2021). Returns a scalar.
    """
    q = teacher_log_probs(teacher_logits, temperature, ensemble).exp()
    p = tempered_log_softmax(student_logits, temperature).exp()
    return (p - q).square().mean()


def teacher_labels(
    teacher_logits: torch.Tensor,
    temperature: Temperature = 1.0,
    mode: HardLabels = "argmax",
    ensemble: EnsembleTemperature = "after_mean",
) -> torch.Tensor:
    """The teacher's hard labels ``[B]`` (int64): ``argmax_j z_t`` or one draw from ``σ(z_t/τ)``.

    ``"sample"`` draws with the global torch RNG of the logits' device (so a resumed run, which restores
    that RNG, draws the same labels) via the exponential race ``argmax_j q_j / E_j``, ``E_j ~ Exp(1)``,
    which picks class j with probability ``q_j`` and needs no host synchronisation.
    """
    log_q = teacher_log_probs(teacher_logits, temperature, ensemble)
    if mode == "argmax":
        return log_q.argmax(-1)
    if mode != "sample":
        raise ValueError(f"mode must be 'argmax' or 'sample', got {mode!r}")
    race = torch.empty_like(log_q).exponential_()
    return (log_q - race.log()).argmax(-1)


def hard_kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: Temperature = 4.0,
    mode: HardLabels = "argmax",
    ensemble: EnsembleTemperature = "after_mean",
) -> torch.Tensor:
    """Cross-entropy with the teacher's labels ``mean_b [ −τ_b² log σ_ŷ_b(z_s/τ_b) ]`` (scalar).

    gnosis ``TeacherStudentHardCrossEntLoss`` (gnosis; Stanton et al. 2021): ``ŷ`` is the teacher's argmax or a sample
    from ``σ(z_t/τ)`` (see :func:`teacher_labels`); the student is tempered and the loss τ²-scaled like KD.
    gnosis' optional label corruption is not implemented.
    """
    labels = teacher_labels(teacher_logits, temperature, mode, ensemble)
    log_p = tempered_log_softmax(student_logits, temperature)
    picked = log_p.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return (-picked * tau_squared(temperature)).mean()


def anneal_kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    beta: float,
    temperature: Temperature = 4.0,
    ensemble: EnsembleTemperature = "after_mean",
) -> torch.Tensor:
    """Convex anneal ``β · hard_kd(argmax) + (1 − β) · kd`` at the same τ (scalar).

    gnosis ``TeacherStudentCvxCrossEnt`` (gnosis; Stanton et al. 2021); the caller lowers β from β₀ to 0 over the run.
    """
    soft = kd(student_logits, teacher_logits, temperature, ensemble)
    if beta == 0:
        return soft
    return beta * hard_kd(student_logits, teacher_logits, temperature, "argmax", ensemble) + (1.0 - beta) * soft


def hashed_normal(index: torch.Tensor, num_classes: int, seed: int = 0) -> torch.Tensor:
    """Standard-normal noise ``[B, c]`` that depends only on (sample index, class, seed): the same for an
    example in every epoch and after a resume, with no table in memory (an integer hash + Box–Muller)."""
    cls = torch.arange(num_classes, device=index.device)
    keys = (index.long()[:, None] * num_classes + cls) * 2 + torch.tensor([[[0]], [[1]]], device=index.device)
    h = keys * -7046029254386353131 + seed * 0x2545F4914F6CDD1D  # large odd multipliers; int64 wraps around
    h = h ^ (h >> 31)
    h = h * -4658895280553007687
    h = h ^ (h >> 29)
    u = ((h & 0xFFFFFF).double() + 0.5) / float(1 << 24)  # in (0, 1)
    return torch.sqrt(-2 * torch.log(u[0])) * torch.cos(2 * torch.pi * u[1])


def noisy_soft_labels(targets: torch.Tensor, noise: torch.Tensor, temperature: float = 0.15) -> torch.Tensor:
    """The "KL*" control targets of Ojha et al. (2023, App. 11.2): ``softmax((onehot(y) + ε) / T)`` ``[B, c]``
    for labels ``[B]`` and noise ``ε`` ``[B, c]`` (σ = 0.2, T = 0.15 in the paper)."""
    onehot = F.one_hot(targets.long(), noise.shape[-1]).to(noise.dtype)
    return F.softmax((onehot + noise) / temperature, dim=-1)


def soft_target_cross_entropy(student_logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """``mean_b −Σ_j q_bj log σ_j(z_b)`` for given target distributions ``q`` ``[B, c]`` (scalar)."""
    log_p = F.log_softmax(at_least_float32(student_logits), dim=-1)
    return -(target_probs.to(log_p.dtype) * log_p).sum(-1).mean()
