"""CRF inference against brute-force enumeration of every tag sequence."""

import itertools

import pytest
import torch

from kdlab.ops.crf import Chain, k_best, log_marginals, log_partition, negative_log_likelihood, sequence_score, viterbi


def random_chain(lengths, tags, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    n = max(lengths)
    e = torch.randn(len(lengths), n, tags, generator=g, dtype=torch.float64) * scale
    mask = torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]
    return Chain(
        e,
        torch.randn(tags, tags, generator=g, dtype=torch.float64) * scale,
        torch.randn(tags, generator=g, dtype=torch.float64),
        torch.randn(tags, generator=g, dtype=torch.float64),
        mask,
    )


def brute(chain, b):
    """Every tag sequence of sentence b with its score (straight from the definition)."""
    length, tags = int(chain.mask[b].sum()), chain.emissions.shape[2]
    e, a = chain.emissions[b], chain.transitions
    out = []
    for y in itertools.product(range(tags), repeat=length):
        s = chain.start[y[0]] + e[0, y[0]] + chain.end[y[-1]]
        s = s + sum(a[y[i - 1], y[i]] + e[i, y[i]] for i in range(1, length))
        out.append((y, s))
    return out


LENGTHS = [(5, 3, 1), (4, 4), (2, 5, 3)]


@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("tags", [2, 3, 4])
def test_log_partition_and_scores_match_enumeration(lengths, tags):
    chain = random_chain(lengths, tags, seed=tags)
    log_z = log_partition(chain)
    for b in range(len(lengths)):
        paths = brute(chain, b)
        scores = torch.stack([s for _, s in paths])
        assert torch.allclose(log_z[b], torch.logsumexp(scores, 0), atol=1e-10)
        y, s = paths[7 % len(paths)]
        padded = torch.zeros(1, chain.mask.shape[1], dtype=torch.long)
        padded[0, : len(y)] = torch.tensor(y)
        one = Chain(chain.emissions[b : b + 1], chain.transitions, chain.start, chain.end, chain.mask[b : b + 1])
        assert torch.allclose(sequence_score(one, padded)[0], s, atol=1e-10)
        assert torch.allclose(negative_log_likelihood(one, padded)[0], log_z[b] - s, atol=1e-10)


@pytest.mark.parametrize("lengths", LENGTHS)
def test_marginals_match_enumeration_and_are_consistent(lengths):
    tags = 3
    chain = random_chain(lengths, tags, seed=1)
    q = log_marginals(chain)
    for b, length in enumerate(lengths):
        paths = brute(chain, b)
        log_z = torch.logsumexp(torch.stack([s for _, s in paths]), 0)
        token = torch.zeros(length, tags, dtype=torch.float64)
        edge = torch.zeros(max(length - 1, 0), tags, tags, dtype=torch.float64)
        for y, s in paths:
            p = torch.exp(s - log_z)
            for i in range(length):
                token[i, y[i]] += p
            for i in range(length - 1):
                edge[i, y[i], y[i + 1]] += p
        assert torch.allclose(q.tokens[b, :length].exp(), token, atol=1e-10)
        assert torch.allclose(q.edges[b, : length - 1].exp(), edge, atol=1e-10)
        assert torch.allclose(q.first[b].exp(), token[0], atol=1e-10)
        assert torch.allclose(q.last[b].exp(), token[length - 1], atol=1e-10)
        # normalised and consistent: Σ_b q_i(a, b) = q_i(a), Σ_a q_i(a, b) = q_{i+1}(b)
        assert torch.allclose(q.tokens[b, :length].exp().sum(-1), torch.ones(length, dtype=torch.float64))
        e = q.edges[b, : length - 1].exp()
        assert torch.allclose(e.sum(2), token[:-1], atol=1e-10) and torch.allclose(e.sum(1), token[1:], atol=1e-10)
        assert torch.all(q.tokens[b, length:] == -torch.inf) and torch.all(q.edges[b, length - 1 :] == -torch.inf)


def test_marginals_are_the_gradient_of_log_partition():
    chain = random_chain((5, 2), 4, seed=3)
    e = chain.emissions.clone().requires_grad_(True)
    log_z = log_partition(Chain(e, chain.transitions, chain.start, chain.end, chain.mask)).sum()
    (grad,) = torch.autograd.grad(log_z, e)
    q = log_marginals(chain).tokens.exp().nan_to_num(0.0)
    assert torch.allclose(grad, q, atol=1e-10)


@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_k_best_matches_sorted_enumeration(lengths, k):
    chain = random_chain(lengths, 3, seed=k)
    sequences, scores = k_best(chain, k)
    for b, length in enumerate(lengths):
        paths = sorted(brute(chain, b), key=lambda p: -float(p[1]))
        expect = [float(s) for _, s in paths[:k]]
        got = scores[b, : len(expect)].tolist()
        assert got == pytest.approx(expect, abs=1e-10)
        assert torch.all(torch.isinf(scores[b, len(expect) :]))
        for j in range(len(expect)):  # every returned path has the score it claims
            y = tuple(sequences[b, j, :length].tolist())
            assert float(dict(paths)[y]) == pytest.approx(got[j], abs=1e-10)
            assert torch.all(sequences[b, j, length:] == 0)
        found = [tuple(sequences[b, j, :length].tolist()) for j in range(len(expect))]
        assert len(set(found)) == len(found)


def test_viterbi_is_the_argmax_and_stable_for_large_scores():
    chain = random_chain((5, 4, 1), 4, seed=9, scale=200.0)
    tags, score = viterbi(chain)
    assert torch.isfinite(log_partition(chain)).all()
    for b, length in enumerate((5, 4, 1)):
        best = max(brute(chain, b), key=lambda p: float(p[1]))
        assert tuple(tags[b, :length].tolist()) == best[0]
        assert float(score[b]) == pytest.approx(float(best[1]))
