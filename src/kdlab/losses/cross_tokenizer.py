"""Token-level distillation between models whose tokenizers differ.

The student's and the teacher's logits are taken at aligned positions (:mod:`kdlab.data.lm.alignment`: after the
same bytes, both predict the token that starts the next group), so the two sides have the same ``[B, M]`` grid but
vocabularies of different sizes and meanings: ``student_logits`` ``[B, M, Vs]``, ``teacher_logits``
``[B, M, Vt]``, ``mask`` ``[B, M]`` bool. Every loss returns ``[B, M]`` float32 (float64 for float64 inputs),
exactly 0 where ``mask`` is False; :func:`kdlab.losses.tokens.reduce_tokens` turns it into a scalar.

- :func:`uld` compares the two distributions with no correspondence between the vocabularies at all (ULD);
- :func:`hybrid` compares the tokens both vocabularies hold (:func:`shared_vocabulary`) with a true divergence
  and the rest with ULD, as TRL's GOLD trainer does.

Temperature: both logits are divided by τ before the softmax, as in :mod:`kdlab.losses.tokens`.
"""

from __future__ import annotations

from typing import Any

import torch

from kdlab.data.text.tokens import backend
from kdlab.losses.tokens import _check_unit_interval, _finish, _kl, _log_mixture, _log_probs

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")


def uld(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    tau_squared: bool = False,
) -> torch.Tensor:
    """Universal Logit Distillation per aligned position: ``Σ_i |sort(q)_i − sort(p)_i|``.

    Boizard et al. (2024), "Towards Cross-Tokenizer Distillation: the Universal Logit Distillation Loss for LLMs",
    §3: the Wasserstein-1 distance between the student's and the teacher's next-token distributions, made cheap
    and vocabulary-free by two simplifications — a uniform transport cost and supports of equal size, the smaller
    vocabulary padded with zero probabilities. Its closed form is the L1 distance between the two probability
    vectors, each sorted in decreasing order:

        ULD = Σ_{i=1}^{max(Vs, Vt)} |q_(i) − p_(i)|,   q_(1) ≥ q_(2) ≥ ...,  p_(1) ≥ p_(2) ≥ ...  (0 past V)

    It ignores which token carries which probability, so it is invariant to any permutation of either vocabulary,
    and 0 when the two sorted vectors agree (a permuted copy of the same distribution). In [0, 2]; like
    :func:`kdlab.losses.tokens.tvd` a bounded distance, hence no τ² by default. Computed as
    ``Σ_{i≤k}|q_(i) − p_(i)| + Σ_{i>k} q_(i) + Σ_{i>k} p_(i)`` with k = min(Vs, Vt), which is the padded sum
    without the padding. The paper's implementation (and TRL's ``ULDLoss``) average it over the sequence, as
    :func:`~kdlab.losses.tokens.reduce_tokens` does.

    Args:
        student_logits (torch.Tensor): ``[B, M, Vs]`` at the aligned positions
            (:func:`kdlab.data.lm.alignment.gather_positions`).
        teacher_logits (torch.Tensor): ``[B, M, Vt]``; −inf entries allowed (probability 0).
        mask (torch.Tensor): ``[B, M]`` bool, True at aligned positions.
        temperature (float): τ > 0; both logits are divided by τ before the softmax.
        tau_squared (bool): multiply by τ² (off by default).

    Returns:
        torch.Tensor: ``[B, M]`` float32 (or float64), 0 where ``mask`` is False.
    """
    q = _log_probs(student_logits, temperature).exp()
    p = _log_probs(teacher_logits, temperature).exp()
    return _finish(_sorted_l1(q, p), mask, temperature, tau_squared)


def hybrid(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    *,
    student_ids_of_shared: torch.Tensor,
    teacher_ids_of_shared: torch.Tensor,
    divergence: str = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
    tau_squared: bool = True,
    uld_weight: float = 1.0,
) -> torch.Tensor:
    """A divergence over the tokens both vocabularies hold, plus ULD over the others (GOLD's hybrid ULD).

    TRL's GOLD trainer (Patiño et al. 2025, "Unlocking On-Policy Distillation for Any Model Family";
    ``trl/experimental/gold/gold_trainer.py``, ``ULDLoss._compute_hybrid_uld_loss``) splits each vocabulary into
    the tokens whose strings both hold (S, :func:`shared_vocabulary`) and the rest: the shared probabilities are
    compared token by token, the rest by ULD. Here, with ``p`` the teacher's and ``q`` the student's probabilities
    (each a full softmax over its own vocabulary), ``p_S, q_S`` their values on S (paired by the id tensors) and
    ``P̄ = Σ_{v∉S} p_v``, ``Q̄ = Σ_{v∉S} q_v`` the mass outside S:

        hybrid = τ² · D(p_S, q_S) + uld_weight · ULD(p restricted to Vt∖S, q restricted to Vs∖S)

    where D is the divergence of positive measures (Csiszár's generalised, or I-, divergence; the probabilities
    are NOT renormalised over S):

        forward_kl:  Σ_S p log(p/q) − Σ_S p + Σ_S q  =  Σ_S p log(p/q) + P̄ − Q̄
        reverse_kl:  Σ_S q log(q/p) + Q̄ − P̄
        jsd (β):     β Σ_S p log(p/m) + (1−β) Σ_S q log(q/m),   m = βp + (1−β)q
                     (its linear terms cancel: GOLD's JSD of the matched probabilities, without its 1e-8 clamp;
                     β = 0 and β = 1 give forward_kl and reverse_kl, as in :func:`kdlab.losses.tokens.jsd`)

    and the ULD term is :func:`uld`'s sorted L1 distance between the two unnormalised vectors of non-shared
    probabilities (the shorter zero-padded; the other side's mass where one side has none). It is computed by
    zeroing the shared probabilities and sorting whole vocabularies (the zeros sort last, which is the padding).

    Why this D: each is ≥ 0 (``a log(a/b) ≥ a − b``) and 0 exactly when the two models give every shared token
    the same probability, whatever the mass outside S; it is finite whenever the student's logits are (q > 0).
    The alternative of one extra bin per side for the mass outside S makes D a divergence of (S+1)-bin
    distributions, but its forward KL is infinite when the student's whole vocabulary is shared (Q̄ = 0 < P̄) —
    the usual case when the student's BPE merges are a prefix of the teacher's, as for two byte-level BPEs of
    300 and 1,000 tokens trained on the same text. GOLD itself feeds the unnormalised matched probabilities to its
    generalised JSD without the linear terms, which for β = 0 (its forward KL) can be negative.

    Exact relations: with identical vocabularies wholly shared (``student_ids_of_shared`` and
    ``teacher_ids_of_shared`` pairing every token), P̄ = Q̄ = 0 and the ULD term is empty, so ``hybrid`` equals
    :func:`~kdlab.losses.tokens.forward_kl` (resp. ``reverse_kl``, ``jsd``) of the teacher logits reindexed by
    the pairing; it is 0 when student and teacher then give the same distribution. τ² (``tau_squared``) scales D
    only: the ULD term is a bounded distance, as in :func:`uld`. GOLD weighs its two terms by
    ``uld_hybrid_matched_weight`` and ``uld_hybrid_unmatched_weight``; ``uld_weight`` is their ratio.

    Args:
        student_logits (torch.Tensor): ``[B, M, Vs]`` at the aligned positions.
        teacher_logits (torch.Tensor): ``[B, M, Vt]``; −inf entries allowed (for ``reverse_kl`` a −inf on a shared
            token makes the value genuinely +inf, as in :func:`~kdlab.losses.tokens.reverse_kl`).
        mask (torch.Tensor): ``[B, M]`` bool, True at aligned positions.
        student_ids_of_shared (torch.Tensor): int64 ``[S]``, distinct student ids of the shared tokens.
        teacher_ids_of_shared (torch.Tensor): int64 ``[S]``, the teacher ids of the same tokens, in the same order.
        divergence (str): ``"forward_kl"``, ``"reverse_kl"`` or ``"jsd"``, the D above.
        beta (float): β in [0, 1] for ``"jsd"``, the teacher's weight in the mixture m.
        temperature (float): τ > 0; both logits are divided by τ before the softmax.
        tau_squared (bool): multiply D by τ².
        uld_weight (float): the weight of the ULD term over the non-shared tokens.

    Returns:
        torch.Tensor: ``[B, M]`` float32 (or float64), 0 where ``mask`` is False.

    Raises:
        ValueError: for an unknown ``divergence``, β outside [0, 1], or id tensors of different shapes.
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {', '.join(DIVERGENCES)}; got {divergence!r}")
    _check_unit_interval("beta", beta)
    if student_ids_of_shared.ndim != 1 or student_ids_of_shared.shape != teacher_ids_of_shared.shape:
        raise ValueError(
            f"student_ids_of_shared and teacher_ids_of_shared must be 1-D of one length; got "
            f"{tuple(student_ids_of_shared.shape)} and {tuple(teacher_ids_of_shared.shape)}"
        )
    log_q = _log_probs(student_logits, temperature)
    log_p = _log_probs(teacher_logits, temperature)
    student_ids = student_ids_of_shared.to(log_q.device)
    teacher_ids = teacher_ids_of_shared.to(log_p.device)
    log_q_shared, log_p_shared = log_q[..., student_ids], log_p[..., teacher_ids]
    # the non-shared probabilities, with the shared ones set to 0: boolean masks, not index lists, so that nothing
    # waits for the host; the zeros sort last, which is exactly ULD's zero-padding
    q_rest = torch.where(_outside(student_ids, log_q.shape[-1]), log_q.exp(), 0.0)
    p_rest = torch.where(_outside(teacher_ids, log_p.shape[-1]), log_p.exp(), 0.0)
    if divergence == "jsd" and 0.0 < beta < 1.0:
        log_m = _log_mixture(log_p_shared, log_q_shared, beta)
        value = beta * _kl(log_p_shared, log_m) + (1.0 - beta) * _kl(log_q_shared, log_m)
    elif divergence == "reverse_kl" or (beta == 1.0 and divergence == "jsd"):  # jsd at β = 1: the reverse KL
        value = _kl(log_q_shared, log_p_shared) + q_rest.sum(-1) - p_rest.sum(-1)
    else:  # forward_kl, or jsd at β = 0
        value = _kl(log_p_shared, log_q_shared) + p_rest.sum(-1) - q_rest.sum(-1)
    if tau_squared:
        value = value * temperature**2
    if uld_weight:
        value = value + uld_weight * _sorted_l1(q_rest, p_rest)
    return torch.where(mask, value, 0.0)


def shared_vocabulary(student_tokenizer: Any, teacher_tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The ids of the tokens whose strings are identical in both vocabularies (special tokens included).

    Strings are compared as the vocabularies store them: for two byte-level BPEs (GPT-2's byte alphabet, ``Ġ`` for
    the space) equal strings are equal bytes. Across tokenizer families (SentencePiece's ``▁``, WordPiece's ``##``)
    the same text is spelled differently and few strings match.

    Args:
        student_tokenizer (Any): a fast tokenizer or a ``tokenizers.Tokenizer``.
        teacher_tokenizer (Any): the same for the teacher.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``student_ids`` and ``teacher_ids``, int64 ``[S]``, sorted by student
        id; entry ``i`` of both is the same string.
    """
    student = backend(student_tokenizer).get_vocab(with_added_tokens=True)
    teacher = backend(teacher_tokenizer).get_vocab(with_added_tokens=True)
    pairs = sorted((student_id, teacher[token]) for token, student_id in student.items() if token in teacher)
    ids = torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2)
    return ids[:, 0].contiguous(), ids[:, 1].contiguous()


# --- helpers -----------------------------------------------------------------------------------------------------


def _sorted_l1(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``Σ_i |sort(q)_i − sort(p)_i|`` over the last dimension, both sorted decreasingly, the shorter zero-padded."""
    q = q.sort(dim=-1, descending=True).values
    p = p.sort(dim=-1, descending=True).values
    k = min(q.shape[-1], p.shape[-1])
    return (q[..., :k] - p[..., :k]).abs().sum(-1) + q[..., k:].sum(-1) + p[..., k:].sum(-1)


def _outside(ids: torch.Tensor, size: int) -> torch.Tensor:
    """Bool ``[size]``: True at the indices that are not in ``ids``."""
    outside = torch.ones(size, dtype=torch.bool, device=ids.device)
    outside[ids] = False
    return outside
