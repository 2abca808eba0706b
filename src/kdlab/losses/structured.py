"""Structural knowledge distillation (Wang et al. 2021, "Structural Knowledge Distillation") and its baselines.

Every loss returns one value per sentence ``[B]`` — summed over the sentence's tokens — and is multiplied by
τ²; a method averages over sentences (the official code's convention, kept for every baseline). Shapes:
``B`` sentences padded to ``n`` tokens, ``L`` tags, ``mask`` ``[B, n]`` a prefix mask; CRFs are
:class:`kdlab.ops.crf.Chain`; teacher targets are log-probabilities.

The structural objective is the cross-entropy between the teacher's and the student's distributions over
whole structures, which factorizes over the student's substructures u:

    L = −Σ_y P_t(y|x) log P_s(y|x) = −Σ_u P_t(u|x) s_s(u, x) + log Z_s(x)

* case 1a (CRF → CRF) and case 3 (MaxEnt → CRF): u = first tag, tag bigrams, last tag; P_t(u) are the
  teacher's edge marginals (forward–backward) or, for a MaxEnt teacher, products of its token distributions;
* case 2a (CRF → MaxEnt) and 1b (parser → sequence labelling): u = one label per token, P_t(u) the teacher's
  token (or head × relation) marginals; a locally normalised student has no log Z term.

Temperature: the student's scores and its log Z are divided by τ (global). The teacher's marginals are either
those of the globally tempered teacher ``P_t(y)^{1/τ}/Z`` (``global``: the objective is then exactly the
tempered cross-entropy) or computed at τ = 1 and re-normalized as ``softmax(log q / τ)`` per substructure
position (``local``: the official code's choice, which the paper reports as better).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from kdlab.losses.logits import at_least_float32, tau_squared, tempered_log_softmax
from kdlab.ops.crf import Chain, Marginals, log_marginals, log_partition, sequence_score

TemperatureMode = Literal["local", "global"]
TEMPERATURE_MODES = ("local", "global")


def _local(log_q: torch.Tensor, temperature: float, dims: int = 1) -> torch.Tensor:
    """``softmax(log q / τ)`` over the last ``dims`` dimensions, −inf rows (padding) kept −inf."""
    if temperature == 1.0:
        return log_q
    flat = log_q.flatten(-dims) if dims > 1 else log_q
    finite = torch.isfinite(flat).any(-1, keepdim=True)
    tempered = torch.where(finite, tempered_log_softmax(flat, temperature), flat)
    return tempered.view_as(log_q)


def crf_teacher_marginals(teacher: Chain, temperature: float = 1.0, mode: TemperatureMode = "local") -> Marginals:
    """The teacher CRF's log-marginals at temperature τ: exact for ``global``, re-normalized per position
    (token and first/last over L tags, edges over the L² pairs) for ``local``."""
    if mode == "global":
        return log_marginals(teacher.scaled(1.0 / temperature))
    q = log_marginals(teacher)
    return Marginals(
        _local(q.tokens, temperature), _local(q.edges, temperature, 2), _local(q.first, temperature),
        _local(q.last, temperature),
    )  # fmt: skip


def product_marginals(token_log_probs: torch.Tensor, mask: torch.Tensor) -> Marginals:
    """Marginals of a MaxEnt teacher, whose sequence distribution is the product of its token distributions
    ``[B, n, L]`` (case 3): ``q_i(a, b) = p_i(a) p_{i+1}(b)``. Temper the token distributions first — for a
    product, local and global temperature coincide."""
    tokens = token_log_probs.masked_fill(~mask[..., None], -torch.inf)
    edges = tokens[:, :-1, :, None] + tokens[:, 1:, None, :]
    last_index = (mask.sum(1) - 1)[:, None, None].expand(-1, 1, tokens.shape[2])
    return Marginals(tokens, edges, tokens[:, 0], tokens.gather(1, last_index).squeeze(1))


def _weighted(log_q: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Σ q·s over the trailing dimensions, with q = exp(log q) = 0 where log q = −inf."""
    return (log_q.exp() * scores).flatten(1).sum(1)


def structural_kd_crf(
    student: Chain, targets: Marginals, temperature: float = 1.0, *, clamp: bool = False
) -> torch.Tensor:
    """Cases 1a and 3: ``τ² [−Σ_i Σ_{a,b} q_i(a,b)(A[a,b] + e_{i+1}(b))/τ − Σ_a q_1(a)(start(a) + e_1(a))/τ
    − Σ_a q_n(a) end(a)/τ + log Z_s(τ)]`` per sentence ``[B]``. ``clamp`` sets negative values to 0, as
    the official code does (only possible with approximate, e.g. locally tempered, marginals)."""
    s = student.scaled(1.0 / temperature)
    edge_scores = s.transitions + s.emissions[:, 1:, None, :]  # [B, n−1, L, L]
    loss = (
        -_weighted(targets.edges, edge_scores)
        - _weighted(targets.first, s.start + s.emissions[:, 0])
        - _weighted(targets.last, s.end.expand_as(targets.last))
        + log_partition(s)
    )
    if clamp:
        loss = loss.clamp_min(0.0)
    return tau_squared(temperature) * loss


def structural_kd_tokens(
    student_logits: torch.Tensor, target_log_probs: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Cases 2a and 1b (locally normalized student): ``τ² Σ_i Σ_a q_i(a) · −log softmax(z_i/τ)_a`` ``[B]``
    with ``student_logits`` ``[B, n, C]`` and the teacher's (tempered) token marginals ``target_log_probs``."""
    log_p = tempered_log_softmax(student_logits, temperature)
    q = target_log_probs.exp().masked_fill(~mask[..., None], 0.0)
    return -tau_squared(temperature) * (q * log_p).sum((1, 2))


def token_kd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Token KD baseline: ``τ² Σ_i KL(softmax(z_t,i/τ) ‖ softmax(z_s,i/τ))`` on the emission scores ``[B, n, L]``
    (for a CRF teacher its emissions alone, ignoring the transitions) — per sentence ``[B]``."""
    log_p = tempered_log_softmax(student_logits, temperature)
    teacher_logits = at_least_float32(teacher_logits).masked_fill(~mask[..., None], 0.0)
    log_q = tempered_log_softmax(teacher_logits, temperature)
    kl = F.kl_div(log_p, log_q, log_target=True, reduction="none").sum(-1)
    return tau_squared(temperature) * (kl * mask).sum(1)


def posterior_kd(student: Chain, teacher_token_log_marginals: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Posterior KD baseline (Wang et al. 2020a), CRF → CRF: ``τ² Σ_i KL(softmax((α_t+β_t)_i/τ) ‖
    softmax((α_s+β_s)_i/τ))``; ``α + β`` equals the log token marginal up to log Z, so both sides are locally
    tempered token marginals. ``teacher_token_log_marginals`` ``[B, n, L]`` at τ = 1."""
    log_q = _local(teacher_token_log_marginals, temperature)
    log_p = _local(log_marginals(student).tokens, temperature)
    mask = student.mask
    log_q, log_p = log_q.masked_fill(~mask[..., None], 0.0), log_p.masked_fill(~mask[..., None], 0.0)
    kl = F.kl_div(log_p, log_q, log_target=True, reduction="none").sum(-1)
    return tau_squared(temperature) * (kl * mask).sum(1)


def top_k_weights(scores: torch.Tensor, weighted: bool) -> torch.Tensor:
    """Weights of the teacher's k best sequences ``[B, k]``: uniform over the sequences that exist
    (finite score), or — "weighted Top-K" — the softmax of their teacher scores."""
    exists = torch.isfinite(scores)
    if weighted:
        return F.softmax(scores.masked_fill(~exists, -torch.inf), dim=1)
    return exists.to(scores.dtype) / exists.sum(1, keepdim=True).clamp_min(1)


def top_k_crf(student: Chain, sequences: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Top-K KD (Kim & Rush 2016) for a CRF student: ``Σ_k w_k (log Z_s − Score_s(ŷ_k))`` ``[B]`` with the
    teacher's k best sequences ``[B, k, n]`` and their weights ``[B, k]`` (no temperature)."""
    batch, k, n = sequences.shape
    repeat = Chain(
        student.emissions.repeat_interleave(k, 0), student.transitions, student.start, student.end,
        student.mask.repeat_interleave(k, 0),
    )  # fmt: skip
    nll = (log_partition(student).repeat_interleave(k, 0) - sequence_score(repeat, sequences.reshape(-1, n))).view(
        batch, k
    )
    return (weights * nll.masked_fill(weights == 0, 0.0)).sum(1)


def top_k_tokens(
    student_logits: torch.Tensor, sequences: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Top-K KD for a locally normalized student: ``Σ_k w_k Σ_i −log p_s(ŷ_{k,i})`` ``[B]``."""
    log_p = F.log_softmax(at_least_float32(student_logits), dim=-1)  # [B, n, C]
    picked = log_p.unsqueeze(1).expand(-1, sequences.shape[1], -1, -1).gather(3, sequences.unsqueeze(3)).squeeze(3)
    nll = -(picked * mask[:, None, :]).sum(2)  # [B, k]
    return (weights * nll.masked_fill(weights == 0, 0.0)).sum(1)


def token_cross_entropy(logits: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    """Σ_i −log softmax(z_i)_{y_i} per sentence ``[B]``, over tokens with a tag (``tags`` ≥ 0)."""
    known = tags >= 0
    log_p = F.log_softmax(at_least_float32(logits), dim=-1)
    picked = log_p.gather(2, tags.clamp_min(0).unsqueeze(2)).squeeze(2)
    return -(picked * known).sum(1)


def parse_label_log_marginals(
    head_log_probs: torch.Tensor,
    relation_log_probs: torch.Tensor,
    offsets: torch.Tensor,
    relations: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """Case 1b: a parser's marginals mapped onto sequence-labelling labels ℓ = (head offset, relation):
    ``q_m(ℓ = (h − m, r)) = P_t(head = h | m) · P_t(rel = r | m, h)``.

    ``head_log_probs`` ``[B, n, n+1]`` (word m's head h, 0 = ROOT), ``relation_log_probs`` ``[B, n, n+1, R]``,
    the label set as ``offsets``/``relations`` ``[C]``. Heads outside the sentence give 0; the mass of
    (offset, relation) pairs missing from the label set is dropped and each word's distribution re-normalized
    over the label set. Returns ``[B, n, C]`` log-probabilities (−inf at padding and for a word none of whose
    heads the label set can express).
    """
    batch, n, _ = head_log_probs.shape
    words = torch.arange(1, n + 1, device=offsets.device)
    heads = words[:, None] + offsets[None, :]  # [n, C]
    lengths = mask.sum(1)
    inside = (heads[None] >= 0) & (heads[None] <= lengths[:, None, None]) & (heads[None] != words[None, :, None])
    index = heads.clamp(0, n).unsqueeze(0).expand(batch, -1, -1)
    head_part = head_log_probs.gather(2, index)  # [B, n, C]
    num_relations = relation_log_probs.shape[-1]
    flat = relation_log_probs.reshape(batch, n, -1)  # [B, n, (n+1)·R]
    rel_part = flat.gather(2, index * num_relations + relations.view(1, 1, -1))
    log_q = (head_part + rel_part).masked_fill(~inside, -torch.inf)
    covered = torch.isfinite(log_q).any(-1, keepdim=True) & mask[..., None]
    return torch.where(covered, F.log_softmax(log_q.masked_fill(~covered, 0.0), dim=-1), -torch.inf)
