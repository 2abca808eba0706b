"""Generalisation and fidelity metrics (Stanton et al. 2021, Eqs. 2–3; Guo et al. 2017 for ECE).

Every function takes keyword-named ``[N, c]`` logits and/or ``[N]`` integer targets and returns a
0-dim float64 tensor on the inputs' device, so a whole evaluation can be read with one host sync
(see :func:`read`). Accuracy and agreement are fractions in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits.double(), dim=-1)


def accuracy(*, student_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy ``(1/N) Σ_i 1{argmax z_i = y_i}``."""
    return (student_logits.argmax(-1) == targets).double().mean()


def nll(*, student_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood ``−(1/N) Σ_i log p(y_i | x_i)`` (one entry per example)."""
    return -_log_probs(student_logits).gather(1, targets.view(-1, 1)).mean()


def ece(*, student_logits: torch.Tensor, targets: torch.Tensor, bins: int = 10) -> torch.Tensor:
    """Expected calibration error: ``Σ_b (n_b/N) |acc_b − conf_b|`` over equal-width bins ``((k−1)/K, k/K]``
    of the top-1 probability."""
    probs = _log_probs(student_logits).exp()
    confidence, predicted = probs.max(-1)
    correct = (predicted == targets).double()
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    count = torch.zeros(bins, dtype=torch.float64, device=probs.device).index_add_(0, index, torch.ones_like(correct))
    conf_sum = torch.zeros_like(count).index_add_(0, index, confidence)
    acc_sum = torch.zeros_like(count).index_add_(0, index, correct)
    return (acc_sum - conf_sum).abs().sum() / confidence.numel()


def agreement(*, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Average top-1 agreement ``(1/N) Σ_i 1{argmax z_t,i = argmax z_s,i}`` (Stanton Eq. 2)."""
    return (student_logits.argmax(-1) == teacher_logits.argmax(-1)).double().mean()


def predictive_kl(*, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Average predictive ``KL(p_t ‖ p_s)`` at τ = 1, teacher first (Stanton Eq. 3)."""
    log_q, log_p = _log_probs(teacher_logits), _log_probs(student_logits)
    return (log_q.exp() * (log_q - log_p)).sum(-1).mean()


def total_variation(*, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Average total-variation distance ``(1/N) Σ_i ½ Σ_j |p_t,ij − p_s,ij|``."""
    return 0.5 * (_log_probs(teacher_logits).exp() - _log_probs(student_logits).exp()).abs().sum(-1).mean()


def fidelity_metrics(
    *,
    student_logits: torch.Tensor,
    targets: torch.Tensor | None = None,
    teacher_logits: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """All metrics that the given inputs allow: accuracy/nll/ece with targets, agreement/kl/tv with a teacher."""
    out: dict[str, torch.Tensor] = {}
    if targets is not None:
        out["accuracy"] = accuracy(student_logits=student_logits, targets=targets)
        out["nll"] = nll(student_logits=student_logits, targets=targets)
        out["ece"] = ece(student_logits=student_logits, targets=targets)
    if teacher_logits is not None:
        out["agreement"] = agreement(student_logits=student_logits, teacher_logits=teacher_logits)
        out["kl"] = predictive_kl(student_logits=student_logits, teacher_logits=teacher_logits)
        out["tv"] = total_variation(student_logits=student_logits, teacher_logits=teacher_logits)
    return out


def read(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """Copy a dict of 0-dim tensors to Python floats with a single device-to-host transfer."""
    if not metrics:
        return {}
    values = torch.stack([v.detach().double().reshape(()) for v in metrics.values()]).cpu().tolist()
    return dict(zip(metrics, values, strict=True))


def split_metrics(
    student_logits: torch.Tensor, targets: torch.Tensor | None, teacher_logits: torch.Tensor | None
) -> dict[str, float]:
    """Accuracy/NLL/ECE (when labelled) and agreement/KL/TV (when a teacher is given), read once."""
    if targets is not None and bool((targets < 0).any()):
        labelled = targets >= 0
        base = fidelity_metrics(student_logits=student_logits[labelled], targets=targets[labelled])
        targets = None
    else:
        base = {}
    return read(
        {
            **base,
            **fidelity_metrics(student_logits=student_logits, targets=targets, teacher_logits=teacher_logits),
        }
    )
