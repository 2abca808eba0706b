"""Linear-chain CRF inference, batched and masked, in log space.

Conventions (all functions): ``emissions`` ``[B, n, L]`` (score of tag ``a`` at position ``i``),
``transitions`` ``[L, L]`` with ``transitions[a, b]`` the score of moving **from** tag ``a`` **to** tag ``b``
(the flair-based StructuralKD code stores ``[to, from]``; we do not), ``start``/``end`` ``[L]`` the scores of
the first and last tag, ``mask`` ``[B, n]`` bool, a prefix mask (every sentence has ≥ 1 token). Then

    Score(y) = start(y_1) + e_1(y_1) + Σ_{i≥2} (A[y_{i−1}, y_i] + e_i(y_i)) + end(y_n)
    P(y) = exp(Score(y)) / Z,   log Z = LSE_y Score(y)

computed by the forward algorithm ``α_1 = start + e_1``, ``α_i(b) = e_i(b) + LSE_a(α_{i−1}(a) + A[a, b])`` and
the backward one ``β_n = end``, ``β_i(a) = LSE_b(A[a, b] + e_{i+1}(b) + β_{i+1}(b))`` (Lafferty et al. 2001;
Sutton & McCallum 2012). Padded positions carry α forward and hold β at ``end``, so sentences of different
lengths share one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Chain:
    """The potentials of a batch of linear-chain CRFs (see the module docstring for shapes)."""

    emissions: torch.Tensor
    transitions: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    mask: torch.Tensor

    def scaled(self, factor: float) -> Chain:
        """Every potential times ``factor`` (``1/τ``: the globally tempered distribution P(y)^{1/τ}/Z(τ))."""
        if factor == 1.0:
            return self
        return Chain(
            self.emissions * factor, self.transitions * factor, self.start * factor, self.end * factor, self.mask
        )

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(1)


def forward(chain: Chain) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward algorithm: ``log α`` ``[B, n, L]`` and ``log Z`` ``[B]`` (differentiable)."""
    e, mask = chain.emissions, chain.mask
    alpha = chain.start + e[:, 0]
    alphas = [alpha]
    for i in range(1, e.shape[1]):
        step = torch.logsumexp(alpha.unsqueeze(2) + chain.transitions, dim=1) + e[:, i]
        alpha = torch.where(mask[:, i, None], step, alpha)
        alphas.append(alpha)
    return torch.stack(alphas, 1), torch.logsumexp(alpha + chain.end, dim=1)


def backward(chain: Chain) -> torch.Tensor:
    """Backward algorithm: ``log β`` ``[B, n, L]``; ``β`` at a sentence's last token (and beyond) is ``end``."""
    e, mask = chain.emissions, chain.mask
    n = e.shape[1]
    beta = chain.end.expand(e.shape[0], -1)
    betas = [beta]
    for i in range(n - 2, -1, -1):
        step = torch.logsumexp(chain.transitions + (e[:, i + 1] + beta).unsqueeze(1), dim=2)
        beta = torch.where(mask[:, i + 1, None], step, chain.end.expand_as(step))
        betas.append(beta)
    return torch.stack(betas[::-1], 1)


def log_partition(chain: Chain) -> torch.Tensor:
    """``log Z`` ``[B]``."""
    return forward(chain)[1]


def sequence_score(chain: Chain, tags: torch.Tensor) -> torch.Tensor:
    """``Score(y)`` ``[B]`` of tag sequences ``tags`` ``[B, n]`` (values at padding are ignored)."""
    mask = chain.mask
    tags = torch.where(mask, tags, torch.zeros_like(tags))
    emit = chain.emissions.gather(2, tags.unsqueeze(2)).squeeze(2)
    score = (emit * mask).sum(1) + chain.start[tags[:, 0]]
    pairs = chain.transitions[tags[:, :-1], tags[:, 1:]]
    score = score + (pairs * mask[:, 1:]).sum(1)
    last = tags.gather(1, (chain.lengths - 1).unsqueeze(1)).squeeze(1)
    return score + chain.end[last]


def negative_log_likelihood(chain: Chain, tags: torch.Tensor) -> torch.Tensor:
    """``log Z − Score(y)`` ``[B]``: the CRF's training loss per sentence."""
    return log_partition(chain) - sequence_score(chain, tags)


@dataclass(frozen=True)
class Marginals:
    """Log-marginals of a chain: ``tokens`` ``[B, n, L]`` = log P(y_i = a); ``edges`` ``[B, n−1, L, L]`` =
    log P(y_i = a, y_{i+1} = b); ``first``/``last`` ``[B, L]`` = log P(y_1 = a), log P(y_len = a). Padded
    positions hold −inf."""

    tokens: torch.Tensor
    edges: torch.Tensor
    first: torch.Tensor
    last: torch.Tensor


def log_marginals(chain: Chain) -> Marginals:
    """Token and edge log-marginals by forward–backward."""
    alpha, log_z = forward(chain)
    beta = backward(chain)
    z = log_z[:, None, None]
    tokens = (alpha + beta - z).masked_fill(~chain.mask[..., None], -torch.inf)
    edges = (
        alpha[:, :-1, :, None]
        + chain.transitions
        + (chain.emissions[:, 1:] + beta[:, 1:])[:, :, None, :]
        - z[..., None]
    )
    edges = edges.masked_fill(~chain.mask[:, 1:, None, None], -torch.inf)
    last_index = (chain.lengths - 1)[:, None, None].expand(-1, 1, tokens.shape[2])
    last = tokens.gather(1, last_index).squeeze(1)
    return Marginals(tokens, edges, tokens[:, 0], last)


def viterbi(chain: Chain) -> tuple[torch.Tensor, torch.Tensor]:
    """The best tag sequence ``[B, n]`` (0 at padding) and its score ``[B]``."""
    tags, scores = k_best(chain, 1)
    return tags[:, 0], scores[:, 0]


def k_best(chain: Chain, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best tag sequences ``[B, k, n]`` and their scores ``[B, k]``, best first.

    A list Viterbi: each (position, tag) keeps its ``k`` best partial paths; extending them by every next tag
    and keeping the ``k`` best of the ``L·k`` candidates gives distinct paths. When a sentence has fewer than
    ``k`` tag sequences the missing ones have score −inf (their tags are meaningless).
    """
    e, mask = chain.emissions, chain.mask
    batch, n, tags = e.shape
    minus_inf = torch.full((batch, tags, k - 1), -torch.inf, dtype=e.dtype, device=e.device)
    scores = torch.cat([(chain.start + e[:, 0]).unsqueeze(2), minus_inf], 2)  # [B, L(tag), k(rank)]
    pointers = []
    keep = torch.arange(tags * k, device=e.device).view(1, tags, k).expand(batch, -1, -1)
    for i in range(1, n):
        # candidates[b, a·k + r, c] = scores[b, a, r] + A[a, c] + e_i(c)
        candidates = (scores.unsqueeze(3) + chain.transitions[None, :, None, :]).reshape(batch, tags * k, tags)
        best, where = (candidates + e[:, i, None, :]).topk(k, dim=1)  # [B, k, L]
        best, where = best.transpose(1, 2), where.transpose(1, 2)  # [B, L, k]
        on = mask[:, i, None, None]
        scores = torch.where(on, best, scores)
        pointers.append(torch.where(on, where, keep))
    final, flat = (scores + chain.end[None, :, None]).reshape(batch, tags * k).topk(k, dim=1)  # [B, k]
    out = torch.zeros(batch, k, n, dtype=torch.long, device=e.device)
    state = flat  # a·k + r at the last position
    for i in range(n - 1, 0, -1):
        out[:, :, i] = state // k
        state = pointers[i - 1].reshape(batch, tags * k).gather(1, state)
    out[:, :, 0] = state // k
    return out * mask[:, None, :], final
