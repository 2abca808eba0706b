"""Token-level divergences against a teacher known only by its top-k next-token log-probabilities (a top-k logit
cache, as DistillKit stores them) — three ways to handle the mass the cache left out.

The teacher gives, per trained position, the ids and log-probabilities of its k most likely tokens (of its full
``log_softmax(z / τ)``) and ``log`` of the remaining mass (the tail). The student gives full logits.

- ``bucket`` (kdlab's default): both distributions on k + 1 bins — the teacher's k tokens and one bin for everything
  else (the teacher's tail; the student's mass outside the teacher's k tokens). A true distribution on each side,
  so every divergence of :mod:`kdlab.losses.tokens` applies and is 0 when the student equals the teacher; at k = V the
  tail bins are empty and the loss equals the full-vocabulary loss exactly.
- ``renormalise``: both restricted to the teacher's k tokens and renormalised there (a true divergence on k bins;
  it ignores how much mass each puts outside them).
- ``raw`` (DistillKit's convention, forward KL only): ``Σ_{i∈top-k} p_i (log p_i − log q_i)`` with the teacher's
  probabilities as stored (not summing to 1) and the student's full-vocabulary log-probabilities — a partial KL that
  can be negative and is not 0 when student = teacher unless k = V.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from kdlab.losses.logits import at_least_float32

Tail = Literal["bucket", "renormalise", "raw"]
TAILS: tuple[Tail, ...] = ("bucket", "renormalise", "raw")


def _finite(log_probs: torch.Tensor) -> torch.Tensor:
    """−inf (an empty bin, a token the teacher forbids) as the most negative finite number: exp gives exactly 0, and
    neither the values nor the gradients of a divergence meet 0·(−inf)."""
    return log_probs.clamp(min=torch.finfo(log_probs.dtype).min)


def top_k_bins(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    teacher_tail: torch.Tensor,
    *,
    temperature: float = 1.0,
    tail: Tail = "bucket",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's and the teacher's log-probabilities on the teacher's top-k bins (and the tail bin).

    Args:
        student_logits (torch.Tensor): ``[R, V]`` one row per trained position.
        teacher_ids (torch.Tensor): ``[R, k]`` int64, the teacher's k most likely next tokens.
        teacher_log_probs (torch.Tensor): ``[R, k]``, their log-probabilities under ``log_softmax(z_t / τ)``.
        teacher_tail (torch.Tensor): ``[R]``, ``log`` of the teacher's mass outside them (−inf at k = V).
        temperature (float): τ of the student's softmax (the teacher's was applied when it was cached).
        tail (str): ``"bucket"`` (k + 1 bins) or ``"renormalise"`` (k bins, each side renormalised).

    Returns:
        tuple[torch.Tensor, torch.Tensor]: student and teacher log-probabilities ``[R, k + 1]`` (bucket) or
        ``[R, k]`` (renormalise), float32, finite — ready for any divergence of :mod:`kdlab.losses.tokens`.
    """
    student = F.log_softmax(at_least_float32(student_logits) / temperature, dim=-1)
    ids = teacher_ids.long()
    picked = student.gather(-1, ids)
    teacher = at_least_float32(teacher_log_probs)
    if tail == "renormalise":
        return (_finite(picked - picked.logsumexp(-1, keepdim=True)),
                _finite(teacher - teacher.logsumexp(-1, keepdim=True)))  # fmt: skip
    rest = student.scatter(-1, ids, float("-inf")).logsumexp(-1, keepdim=True)
    student_bins = torch.cat([picked, rest], dim=-1)
    teacher_bins = torch.cat([teacher, at_least_float32(teacher_tail).unsqueeze(-1)], dim=-1)
    return _finite(student_bins), _finite(teacher_bins)


def raw_top_k_kl(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    *,
    temperature: float = 1.0,
) -> torch.Tensor:
    """DistillKit's partial forward KL on the teacher's top-k tokens, per row: ``Σ_{i∈top-k} p_i (log p_i − log q_i)``.

    Args:
        student_logits (torch.Tensor): ``[R, V]``.
        teacher_ids (torch.Tensor): ``[R, k]`` int64.
        teacher_log_probs (torch.Tensor): ``[R, k]`` as cached (not renormalised).
        temperature (float): τ of the student's softmax.

    Returns:
        torch.Tensor: ``[R]`` float32 (may be negative; see the module docstring).
    """
    student = F.log_softmax(at_least_float32(student_logits) / temperature, dim=-1).gather(-1, teacher_ids.long())
    teacher = _finite(at_least_float32(teacher_log_probs))
    return (teacher.exp() * (teacher - student)).sum(-1)
