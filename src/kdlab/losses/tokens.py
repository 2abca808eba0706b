"""Token-level divergences for causal language-model distillation, and the one way to reduce them.

Causal alignment: the logit at position t predicts token t+1. :func:`next_token_targets` shifts the labels
(``labels[:, 1:]``) and builds the mask from the SHIFTED labels; :func:`prediction_logits` drops the last
position (``logits[:, :-1]``), which predicts nothing. Every function below takes logits already aligned this way.

Shapes: ``student_logits`` and ``teacher_logits`` ``[B, T, V]`` (B sequences, T positions, V vocabulary
entries); ``mask`` ``[B, T]`` bool, True where a position is trained. Every divergence returns per-token values
``[B, T]`` that are exactly 0 where ``mask`` is False (a ``torch.where``, so whatever finite logits sit at padded
positions cannot leak into the values, the reduced loss or the gradient elsewhere). :func:`reduce_tokens` turns
them into a scalar.

Distributions: ``p = softmax(z_t / τ)`` is the teacher's, ``q = softmax(z_s / τ)`` the student's. The values are
true divergences, 0 when student and teacher agree — not cross-entropies, which differ from the forward KL by the
teacher's entropy (the same gradient for the student, a different number to log). Every softmax runs in log space
(``log_softmax``, ``logaddexp``) and in float32 or better, also for bf16/fp16 inputs and under autocast, so the
outputs are float32 (float64 inputs stay float64).

Temperature and τ²: logits are divided by τ before the softmax. With ``tau_squared=True`` (the default of the
KL-type divergences) the divergence is multiplied by τ² (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in
a Neural Network", §2): the gradient of a tempered divergence w.r.t. the logits scales as 1/τ², so the factor keeps
its magnitude independent of τ and τ can be changed without retuning the loss weight. TVD defaults to no τ² (it is
a bounded distance in [0, 1], commonly reported as such).

Vocabulary masks: teacher logits may hold −inf (the teacher gives those tokens probability 0). The convention
0·log 0 = 0 is applied in the values AND the backward, so :func:`forward_kl`, :func:`jsd`, :func:`tvd` and
:func:`skew_kl` stay finite with finite gradients there. :func:`reverse_kl` is genuinely +inf when the student puts
mass where the teacher has none. Student logits are assumed finite (then q > 0 everywhere).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kdlab.losses.logits import at_least_float32

IGNORE_INDEX = -100


def next_token_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The next-token targets and their mask: the one causal alignment of kdlab.

    The logit at position t predicts token t+1, so the caller compares ``prediction_logits(logits)`` (positions
    ``0..T-2``) with ``labels[:, 1:]``. The mask comes from the SHIFTED labels: with a prompt masked at positions
    ``< P`` (``labels[:, :P] == IGNORE_INDEX``) the first trained position is ``P − 1``, the logit that predicts the
    first answer token.

    Args:
        labels (torch.Tensor): token ids ``[B, T]``, ``IGNORE_INDEX`` (−100) where a position is not trained
            (prompt, padding).

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``targets`` ``[B, T-1]`` (``labels[:, 1:]``, a view) and ``mask``
        ``[B, T-1]`` bool (``targets != IGNORE_INDEX``).
    """
    targets = labels[:, 1:]
    return targets, targets != IGNORE_INDEX


def prediction_logits(logits: torch.Tensor) -> torch.Tensor:
    """The positions that predict a next token: ``logits[:, :-1]`` ``[B, T-1, V]`` from ``[B, T, V]`` (a view).

    Args:
        logits (torch.Tensor): a causal LM's logits ``[B, T, V]``.

    Returns:
        torch.Tensor: ``[B, T-1, V]``, aligned with :func:`next_token_targets`.
    """
    return logits[:, :-1]


# --- helpers: tempered log-probabilities, KL with 0·log 0 = 0, log-space mixtures ------------------------------------


def _log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = at_least_float32(logits)
    return F.log_softmax(logits if temperature == 1.0 else logits / temperature, dim=-1)


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """``Σ_v a_v (log a_v − log b_v)`` over the last dimension, with 0·log 0 = 0.

    ``log a = −inf`` is clamped to the dtype's most negative finite number BEFORE the product, so that the term is
    ``exp(min) · (min − log b) = 0 · finite = 0`` in the value and in the backward (``0 · (−inf)`` would be NaN, and
    a ``where`` on the product alone would still send ``0 · inf = NaN`` into the backward). One fused ``kl_div``
    (log-target) then computes the terms: half the time of the guarded elementwise form at [8, 32, 4096].
    """
    safe = log_a.clamp(min=torch.finfo(log_a.dtype).min)
    return F.kl_div(log_b, safe, reduction="none", log_target=True).sum(-1)


def _kl_guarded(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """:func:`_kl` where ``log a`` and ``log b`` may both be −inf in one term (the term is then 0): the log-ratio is
    set to 0 wherever ``log a = −inf`` before the product."""
    log_ratio = torch.where(torch.isneginf(log_a), 0.0, log_a - log_b)
    return (log_a.exp() * log_ratio).sum(-1)


def _log_mixture(log_a: torch.Tensor, log_b: torch.Tensor, weight: float) -> torch.Tensor:
    """``log(w·a + (1−w)·b)`` = ``logsumexp([log a + log w, log b + log(1−w)])``, the endpoints taken exactly."""
    if weight == 0.0:
        return log_b
    if weight == 1.0:
        return log_a
    return torch.logaddexp(log_a + math.log(weight), log_b + math.log1p(-weight))


def _finish(value: torch.Tensor, mask: torch.Tensor, temperature: float, tau_squared: bool) -> torch.Tensor:
    if tau_squared:
        value = value * temperature**2
    return torch.where(mask, value, 0.0)


def _check_unit_interval(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


# --- divergences -------------------------------------------------------------------------------------------------


def forward_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    tau_squared: bool = True,
) -> torch.Tensor:
    """Forward (mean-seeking) KL per token: ``τ² · KL(p‖q) = τ² Σ_v p_v (log p_v − log q_v)``.

    The word-level KD objective of Kim & Rush (2016, "Sequence-Level Knowledge Distillation") and Hinton et al.
    (2015), written as a divergence: 0 when ``q = p``. At τ = 1 its gradient w.r.t. the student logits is
    ``q − p`` per token. Finite, with finite gradients, when the teacher logits hold −inf (0·log 0 = 0).

    Args:
        student_logits (torch.Tensor): ``[B, T, V]``, aligned (:func:`prediction_logits`).
        teacher_logits (torch.Tensor): ``[B, T, V]``, aligned; −inf entries allowed.
        mask (torch.Tensor): ``[B, T]`` bool, True at trained positions.
        temperature (float): τ > 0; both logits are divided by τ before the softmax.
        tau_squared (bool): multiply by τ² (see the module docstring).

    Returns:
        torch.Tensor: ``[B, T]`` float32 (or float64), 0 where ``mask`` is False.
    """
    log_p = _log_probs(teacher_logits, temperature)
    log_q = _log_probs(student_logits, temperature)
    return _finish(_kl(log_p, log_q), mask, temperature, tau_squared)


def reverse_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    tau_squared: bool = True,
) -> torch.Tensor:
    """Reverse (mode-seeking) KL per token: ``τ² · KL(q‖p) = τ² Σ_v q_v (log q_v − log p_v)``.

    The token-level objective of MiniLLM (Gu et al. 2024, "MiniLLM: Knowledge Distillation of Large Language
    Models") without its policy-gradient machinery. Where the teacher's logit is −inf (``p_v = 0``) and the
    student's is finite (``q_v > 0``) the divergence is genuinely +inf; no guard hides that.

    Args:
        student_logits (torch.Tensor): ``[B, T, V]``, aligned (:func:`prediction_logits`).
        teacher_logits (torch.Tensor): ``[B, T, V]``, aligned.
        mask (torch.Tensor): ``[B, T]`` bool, True at trained positions.
        temperature (float): τ > 0; both logits are divided by τ before the softmax.
        tau_squared (bool): multiply by τ² (see the module docstring).

    Returns:
        torch.Tensor: ``[B, T]`` float32 (or float64), 0 where ``mask`` is False.
    """
    log_p = _log_probs(teacher_logits, temperature)
    log_q = _log_probs(student_logits, temperature)
    return _finish(_kl(log_q, log_p), mask, temperature, tau_squared)


def jsd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float = 0.5,
    temperature: float = 1.0,
    tau_squared: bool = True,
) -> torch.Tensor:
    """Generalized Jensen–Shannon divergence per token, in the convention of GKD and TRL's ``generalized_jsd_loss``.

    Agarwal et al. (2024), "On-Policy Distillation of Language Models: Learning from Self-Generated Mistakes":

        M = β·p + (1−β)·q,   log M = logsumexp([log p + log β, log q + log(1−β)])
        JSD(β) = τ² · [ β·KL(p‖M) + (1−β)·KL(q‖M) ]

    At β = 0.5 this is the Jensen–Shannon divergence: symmetric in student and teacher and at most ln 2 (without
    τ²). In general ``jsd(s, t, β) = jsd(t, s, 1−β)``.

    Endpoints, a convention and not the limit: β = 0 returns :func:`forward_kl` ``KL(p‖q)`` and β = 1 returns
    :func:`reverse_kl` ``KL(q‖p)`` (as TRL does). The interior formula tends to 0 at BOTH ends — as β → 0, M → q so
    ``KL(q‖M) → 0`` while the weight β on ``KL(p‖M)`` vanishes; symmetrically as β → 1 — so the loss jumps at
    β = 0 and β = 1: ``jsd(β=1e-6)`` is ≈ 0 while ``jsd(β=0)`` is the full forward KL.

    Args:
        student_logits (torch.Tensor): ``[B, T, V]``, aligned (:func:`prediction_logits`).
        teacher_logits (torch.Tensor): ``[B, T, V]``, aligned; −inf entries allowed for β < 1.
        mask (torch.Tensor): ``[B, T]`` bool, True at trained positions.
        beta (float): β in [0, 1], the teacher's weight in the mixture M.
        temperature (float): τ > 0; both logits are divided by τ before the softmax.
        tau_squared (bool): multiply by τ² (see the module docstring).

    Returns:
        torch.Tensor: ``[B, T]`` float32 (or float64), 0 where ``mask`` is False.

    Raises:
        ValueError: if ``beta`` is outside [0, 1].
    """
    _check_unit_interval("beta", beta)
    if beta == 0.0:
        return forward_kl(student_logits, teacher_logits, mask, temperature=temperature, tau_squared=tau_squared)
    if beta == 1.0:
        return reverse_kl(student_logits, teacher_logits, mask, temperature=temperature, tau_squared=tau_squared)
    log_p = _log_probs(teacher_logits, temperature)
    log_q = _log_probs(student_logits, temperature)
    log_m = _log_mixture(log_p, log_q, beta)
    value = beta * _kl(log_p, log_m) + (1.0 - beta) * _kl(log_q, log_m)
    return _finish(value, mask, temperature, tau_squared)


def tvd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    tau_squared: bool = False,
) -> torch.Tensor:
    """Total variation distance per token: ``½ Σ_v |p_v − q_v|``, in [0, 1] (without τ²).

    Used as a distillation objective by Wen et al. (2023), "f-Divergence Minimization for Sequence-Level Knowledge
    Distillation". Unlike the KLs it is bounded, so it defaults to ``tau_squared=False``.

    Args:
        student_logits (torch.Tensor): ``[B, T, V]``, aligned (:func:`prediction_logits`).
        teacher_logits (torch.Tensor): ``[B, T, V]``, aligned; −inf entries allowed.
        mask (torch.Tensor): ``[B, T]`` bool, True at trained positions.
        temperature (float): τ > 0; both logits are divided by τ before the softmax.
        tau_squared (bool): multiply by τ² (off by default).

    Returns:
        torch.Tensor: ``[B, T]`` float32 (or float64), 0 where ``mask`` is False.
    """
    p = _log_probs(teacher_logits, temperature).exp()
    q = _log_probs(student_logits, temperature).exp()
    return _finish(0.5 * (p - q).abs().sum(-1), mask, temperature, tau_squared)


def skew_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    *,
    skew: float = 0.1,
    temperature: float = 1.0,
    tau_squared: bool = True,
) -> torch.Tensor:
    """Skew KL per token: ``τ² · KL(p ‖ α·p + (1−α)·q)`` with α = ``skew``.

    DistiLLM (Ko et al. 2024, "DistiLLM: Towards Streamlined Distillation for Large Language Models"), α = 0.1 by
    default. Mixing a fraction of the teacher into the student's distribution bounds the divergence by
    ``log(1/α)`` (since ``M ≥ α·p``) and keeps its gradient finite where the student puts almost no mass.
    α = 0 is :func:`forward_kl`; α → 1 tends to 0 (``KL(p‖p)``), which α = 1 returns.

    Args:
        student_logits (torch.Tensor): ``[B, T, V]``, aligned (:func:`prediction_logits`).
        teacher_logits (torch.Tensor): ``[B, T, V]``, aligned; −inf entries allowed.
        mask (torch.Tensor): ``[B, T]`` bool, True at trained positions.
        skew (float): α in [0, 1], the teacher's weight in the mixture.
        temperature (float): τ > 0; both logits are divided by τ before the softmax.
        tau_squared (bool): multiply by τ² (see the module docstring).

    Returns:
        torch.Tensor: ``[B, T]`` float32 (or float64), 0 where ``mask`` is False.

    Raises:
        ValueError: if ``skew`` is outside [0, 1].
    """
    _check_unit_interval("skew", skew)
    log_p = _log_probs(teacher_logits, temperature)
    if skew == 1.0:  # KL(p‖p) = 0 identically: −inf on both sides of a term needs the guarded form
        return _finish(_kl_guarded(log_p, log_p), mask, temperature, tau_squared)
    log_q = _log_probs(student_logits, temperature)
    return _finish(_kl(log_p, _log_mixture(log_p, log_q, skew)), mask, temperature, tau_squared)


def next_token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy with the data: ``−log softmax(z)[y]`` (the language-modelling loss).

    Args:
        logits (torch.Tensor): ``[B, T, V]``, aligned (:func:`prediction_logits`).
        targets (torch.Tensor): token ids ``[B, T]`` (:func:`next_token_targets`); may be ``IGNORE_INDEX``
            where ``mask`` is False.
        mask (torch.Tensor): ``[B, T]`` bool, True at trained positions.

    Returns:
        torch.Tensor: ``[B, T]`` float32 (or float64), 0 where ``mask`` is False.
    """
    log_q = F.log_softmax(at_least_float32(logits), dim=-1)
    picked = log_q.gather(-1, torch.where(mask, targets, 0).unsqueeze(-1)).squeeze(-1)
    return torch.where(mask, -picked, 0.0)


def reduce_tokens(
    per_token: torch.Tensor, mask: torch.Tensor, num_tokens: int | float | torch.Tensor | None = None
) -> torch.Tensor:
    """Sum over the trained tokens divided by a token count: ``Σ_{b,t} mask·per_token / N`` (a scalar).

    ``N`` is ``num_tokens`` if given, else ``mask.sum()`` (this micro-batch's own count). For gradient accumulation
    and data parallelism the caller passes the count over the WHOLE accumulation window and ALL processes: each
    micro-batch then contributes its exact share, and the summed micro-batch gradients equal the gradient of the full
    batch, however unequal the micro-batches' lengths. (DDP averages gradients over the W processes; the caller undoes
    that by multiplying the loss by W.) Never reduce a ``[B, T, V]`` divergence with ``batchmean`` — it divides by B
    only, so a batch's weight depends on its length — nor with ``mean``, which divides by V as well; and a per
    micro-batch token mean, accumulated, weighs the tokens of short micro-batches more.

    A count of 0 (a fully masked batch) is replaced by 1: the result is 0 with a finite (zero) gradient, not NaN.
    ``num_tokens`` may be a 0-dim tensor on the device; nothing here synchronises with the host.

    Args:
        per_token (torch.Tensor): ``[B, T]`` per-token values; masked positions are ignored (a ``where``, so even
            NaN there cannot leak).
        mask (torch.Tensor): ``[B, T]`` bool, True at trained positions.
        num_tokens (int | float | torch.Tensor | None): the normalising token count ``N``; None for ``mask.sum()``.

    Returns:
        torch.Tensor: a 0-dim tensor in ``per_token``'s dtype.
    """
    total = torch.where(mask, per_token, 0.0).sum()
    return divide_by_tokens(total, mask.sum() if num_tokens is None else num_tokens)


def divide_by_tokens(total: torch.Tensor, num_tokens: int | float | torch.Tensor) -> torch.Tensor:
    """``total / num_tokens``, with a count of 0 (a fully masked window) taken as 1: 0 with a finite gradient, and
    no host read of a count on the device. The division :func:`reduce_tokens` ends with, for sums made elsewhere
    (the chunked losses).

    Args:
        total (torch.Tensor): a 0-dim sum over tokens.
        num_tokens (int | float | torch.Tensor): the window's token count (see :func:`reduce_tokens`).

    Returns:
        torch.Tensor: a 0-dim tensor.
    """
    if isinstance(num_tokens, torch.Tensor):
        count = num_tokens.to(total.dtype)
        return total / torch.where(count > 0, count, torch.ones_like(count))
    return total / (num_tokens if num_tokens > 0 else 1)
