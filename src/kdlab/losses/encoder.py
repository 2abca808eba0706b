"""Token-level losses of transformer-encoder distillation: TinyBERT (Jiao et al. 2020), MiniLM (Wang et al. 2020),
MiniLM v2 (Wang et al. 2021) and Aguilar et al. (2020).

Conventions: hidden states and attention projections are ``[B, T, d]`` (``d = heads · head_dim``), attention scores
and probabilities ``[B, H, T, T]`` (query rows, key columns), ``mask`` is the ``[B, T]`` attention mask (bool or
0/1; 1 = a real token). Every loss ignores padded rows and padded columns exactly, so padding a batch further
changes no loss; every one returns a scalar, runs its products, softmaxes and KL in float32 (also under autocast)
and is zero when the student's inputs equal the teacher's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

import torch
import torch.nn.functional as F

from kdlab.losses.logits import at_least_float32

Fn = TypeVar("Fn", bound=Callable[..., torch.Tensor])


def full_precision(fn: Fn) -> Fn:
    """Run ``fn`` with autocast off: the engine computes losses under autocast, which would put the Q·Kᵀ products
    and the softmaxes back into bfloat16."""

    @wraps(fn)
    def run(*args: object, **kwargs: object) -> torch.Tensor:
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        device = tensors[0].device.type if tensors else "cpu"
        with torch.autocast(device, enabled=False):
            return fn(*args, **kwargs)

    return run  # type: ignore[return-value]


def _valid(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """The mask as bool ``[B, T]``; every position of ``like`` (``[B, T, ...]``) when there is none."""
    if mask is None:
        return torch.ones(like.shape[:2], dtype=torch.bool, device=like.device)
    if mask.shape != like.shape[:2]:
        raise ValueError(f"mask must be [B, T] = {tuple(like.shape[:2])}; got {tuple(mask.shape)}")
    return mask.bool()


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[B, T, H·d_h]`` → ``[B, H, T, d_h]`` (float32), the head layout of Hugging Face attention."""
    batch, length, width = x.shape
    if width % num_heads:
        raise ValueError(f"{num_heads} heads do not divide the width {width}")
    # reshape, not view: teacher features cut to the batch's length ([:, :T]) are not contiguous
    return at_least_float32(x).reshape(batch, length, num_heads, width // num_heads).transpose(1, 2)


def _products(left: torch.Tensor, right: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``L_h R_hᵀ / √d_h`` per head: ``[B, T, d]`` twice → ``[B, H, T, T]``."""
    left, right = split_heads(left, num_heads), split_heads(right, num_heads)
    return left @ right.transpose(-1, -2) / math.sqrt(left.shape[-1])


def _masked_log_softmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the valid keys (``valid`` ``[B, T]``); 0 at padded keys. Padded keys get the most negative
    finite score rather than −inf, so that a sequence without any valid token gives no NaN (in value or gradient)."""
    keys = valid[:, None, None, :]
    log_probs = F.log_softmax(scores.masked_fill(~keys, torch.finfo(scores.dtype).min), dim=-1)
    return log_probs.masked_fill(~keys, 0.0)


@full_precision
def attention_scores(
    query: torch.Tensor, key: torch.Tensor, num_heads: int, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Pre-softmax attention scores ``A_h = Q_h K_hᵀ / √d_h`` (scaled dot-product attention, Vaswani et al. 2017),
    the quantity TinyBERT matches; without the additive mask.

    Args:
        query: ``[B, T, d]``, the output of a block's query projection.
        key: ``[B, T, d]``, the output of its key projection.
        num_heads: ``H``, dividing ``d``.
        mask: ``[B, T]``; when given, the scores of padded rows and columns are set to 0 (no stray values).

    Returns ``[B, H, T, T]`` in float32.
    """
    scores = _products(query, key, num_heads)
    if mask is None:
        return scores
    valid = _valid(mask, query)
    return scores.masked_fill(~(valid[:, None, :, None] & valid[:, None, None, :]), 0.0)


@full_precision
def attention_probabilities(
    query: torch.Tensor, key: torch.Tensor, num_heads: int, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Self-attention probabilities ``softmax_j(Q_h K_hᵀ / √d_h)`` over the valid keys, as the model's own attention
    computes them (its additive mask excludes padded keys).

    Args:
        query: ``[B, T, d]``, the output of a block's query projection.
        key: ``[B, T, d]``, the output of its key projection.
        num_heads: ``H``, dividing ``d``.
        mask: ``[B, T]``.

    Returns ``[B, H, T, T]`` in float32; each row sums to 1 over the valid keys, padded keys get 0.
    """
    valid = _valid(mask, query)
    return _masked_log_softmax(_products(query, key, num_heads), valid).exp() * valid[:, None, None, :]


@full_precision
def self_relation(x: torch.Tensor, num_heads: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MiniLM's self-relation ``softmax_j(X_h X_hᵀ / √d_h)`` over the valid keys: the value relation of Wang et al.
    (2020) and the Q-Q / K-K / V-V relations of Wang et al. (2021).

    Args:
        x: ``[B, T, d]``, a query, key or value projection.
        num_heads: the relation heads, dividing ``d``; ``d_h = d / num_heads``.
        mask: ``[B, T]``.

    Returns ``[B, H, T, T]`` in float32.
    """
    return attention_probabilities(x, x, num_heads, mask)


def _row_mean(per_row: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``[B, H, T]`` over heads and the valid rows of every sequence of the batch."""
    rows = valid[:, None, :].to(per_row.dtype)
    return (per_row * rows).sum() / (rows.sum() * per_row.shape[1]).clamp_min(1.0)


def _kl_rows(student_log: torch.Tensor, teacher_log: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``Σ_j∈valid q_j (log q_j − log p_j)`` per row ``[B, H, T]``, from log-probabilities that are 0 off the
    valid keys."""
    keys = valid[:, None, None, :].to(teacher_log.dtype)
    return (keys * teacher_log.exp() * (teacher_log - student_log)).sum(-1)


@full_precision
def hidden_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """TinyBERT's embedding and hidden-state loss ``MSE(H^S W, H^T)`` (Jiao et al. 2020) over the valid
    positions: ``Σ_{b,t valid} ‖h^S_bt − h^T_bt‖² / (#valid · d)``.

    Args:
        student: ``[B, T, d]``, already projected to the teacher's width (the projection ``W`` is the method's).
        teacher: ``[B, T, d]``.
        mask: ``[B, T]``.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"hidden_mse needs equal shapes; got {tuple(student.shape)} and {tuple(teacher.shape)}")
    valid = _valid(mask, student)
    squared = (at_least_float32(student) - at_least_float32(teacher)).square().sum(-1)
    return (squared * valid).sum() / (valid.sum() * student.shape[-1]).clamp_min(1)


@full_precision
def attention_score_mse(
    student_scores: torch.Tensor, teacher_scores: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """TinyBERT's attention loss ``(1/h) Σ_h MSE(A^S_h, A^T_h)`` on pre-softmax scores (Jiao et al. 2020),
    averaged over heads and valid (row, column) pairs. (TinyBERT's code zeroes the masked scores instead, which
    still counts padded pairs in the mean.)

    Args:
        student_scores: ``[B, H, T, T]`` (:func:`attention_scores`).
        teacher_scores: ``[B, H, T, T]``, the same number of heads.
        mask: ``[B, T]``.
    """
    if student_scores.shape != teacher_scores.shape:
        raise ValueError(
            f"attention_score_mse needs equal shapes (equal head counts); got {tuple(student_scores.shape)} "
            f"and {tuple(teacher_scores.shape)}"
        )
    valid = _valid(mask, student_scores[:, 0])
    pairs = (valid[:, None, :, None] & valid[:, None, None, :]).to(torch.float32)
    squared = (at_least_float32(student_scores) - at_least_float32(teacher_scores)).square()
    return (squared * pairs).sum() / (pairs.sum() * student_scores.shape[1]).clamp_min(1.0)


@full_precision
def attention_kl(
    student_probs: torch.Tensor, teacher_probs: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """MiniLM's self-attention transfer ``(1/(H·|x|)) Σ_h Σ_t KL(A^T_{h,t} ‖ A^S_{h,t})`` (Wang et al. 2020;
    the attention rows of Aguilar et al. 2020), the mean over heads and the valid rows of the batch, each row's KL
    over its valid keys, in log space.

    Args:
        student_probs: ``[B, H, T, T]`` (:func:`attention_probabilities`).
        teacher_probs: ``[B, H, T, T]``, the same number of heads.
        mask: ``[B, T]``.
    """
    if student_probs.shape != teacher_probs.shape:
        raise ValueError(
            f"attention_kl needs equal shapes (equal head counts); got {tuple(student_probs.shape)} and "
            f"{tuple(teacher_probs.shape)}"
        )
    valid = _valid(mask, student_probs[:, 0])
    keys = valid[:, None, None, :]
    # probabilities of 0 (padded keys, or underflow) get the smallest positive float: finite logs and gradients
    tiny = torch.finfo(torch.float32).tiny
    student, teacher = (
        at_least_float32(p).clamp_min(tiny).log().masked_fill(~keys, 0.0) for p in (student_probs, teacher_probs)
    )
    return _row_mean(_kl_rows(student, teacher, valid), valid)


@full_precision
def relation_kl(
    student_x: torch.Tensor, teacher_x: torch.Tensor, num_relation_heads: int, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """KL(teacher ‖ student) between self-relations ``softmax(X_r X_rᵀ / √d_r)`` of one projection, averaged over
    relation heads and valid rows (Wang et al. 2020: the value relation with the attention heads; Wang et
    al. 2021: Q-Q, K-K and V-V relations with ``num_relation_heads`` heads of their own). The widths may
    differ: each model's projection is split into the same number of heads, ``d_r`` = its width / heads.

    Args:
        student_x: ``[B, T, d_s]``, query, key or value projection of the student.
        teacher_x: ``[B, T, d_t]``, the same projection of the teacher.
        num_relation_heads: divides both ``d_s`` and ``d_t``.
        mask: ``[B, T]``.
    """
    if student_x.shape[:2] != teacher_x.shape[:2]:
        raise ValueError(
            f"relation_kl needs the same [B, T]; got {tuple(student_x.shape)} and {tuple(teacher_x.shape)}"
        )
    valid = _valid(mask, student_x)
    student = _masked_log_softmax(_products(student_x, student_x, num_relation_heads), valid)
    teacher = _masked_log_softmax(_products(teacher_x, teacher_x, num_relation_heads), valid)
    return _row_mean(_kl_rows(student, teacher, valid), valid)


@full_precision
def cls_cosine(student_cls: torch.Tensor, teacher_cls: torch.Tensor) -> torch.Tensor:
    """Aguilar et al. (2020) [CLS] loss ``mean_b (1 − cos(h^S_b, h^T_b))``; the [CLS] token is always a real token,
    so no mask is needed.

    Args:
        student_cls: ``[B, d]``, projected to the teacher's width by the method where the widths differ.
        teacher_cls: ``[B, d]``.
    """
    if student_cls.shape != teacher_cls.shape:
        raise ValueError(
            f"cls_cosine needs equal shapes; got {tuple(student_cls.shape)} and {tuple(teacher_cls.shape)}"
        )
    return (1.0 - F.cosine_similarity(at_least_float32(student_cls), at_least_float32(teacher_cls), dim=-1)).mean()
