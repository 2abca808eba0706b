"""Dependency-tree inference checked against brute-force enumeration of every tree (n ≤ 5)."""

import math

import pytest
import torch

from kdlab.ops.trees import (
    chu_liu_edmonds,
    decode_eisner,
    decode_mst,
    eisner,
    enumerate_trees,
    head_selection_log_marginals,
    matrix_tree_log_partition,
    matrix_tree_marginals,
    tree_score,
    valid_heads,
)

MIXED_LENGTHS = [5, 3, 1]


def batch(lengths: list[int], seed: int, scale: float = 1.0, pad: float = float("nan")) -> tuple[torch.Tensor, ...]:
    """Random float64 scores ``[B, n, n+1]`` with ``pad`` in every entry a padded word or head touches."""
    n = max(lengths)
    generator = torch.Generator().manual_seed(seed)
    scores = scale * torch.randn(len(lengths), n, n + 1, generator=generator, dtype=torch.float64)
    mask = torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]
    for b, length in enumerate(lengths):
        scores[b, length:, :] = pad
        scores[b, :, length + 1 :] = pad
    return scores, mask


def brute_force(scores: torch.Tensor, length: int, **tree_kinds) -> tuple[list[tuple[int, ...]], torch.Tensor]:
    """Every tree of one sentence and its score."""
    trees = enumerate_trees(length, **tree_kinds)
    return trees, torch.tensor(
        [tree_score(scores[:length, : length + 1], heads) for heads in trees], dtype=torch.float64
    )


def brute_force_marginals(scores: torch.Tensor, length: int, single_root: bool) -> torch.Tensor:
    trees, tree_scores = brute_force(scores, length, single_root=single_root)
    probabilities = tree_scores.softmax(dim=0)
    marginals = torch.zeros(scores.shape, dtype=torch.float64)
    for heads, probability in zip(trees, probabilities, strict=True):
        marginals[torch.arange(length), torch.tensor(heads, dtype=torch.long)] += probability
    return marginals


@pytest.mark.parametrize(
    ("single_root", "projective", "counts"),
    [
        (True, False, [1, 2, 9, 64, 625]),
        (False, False, [1, 3, 16, 125, 1296]),
        (True, True, [1, 2, 7, 30, 143]),
        (False, True, [1, 3, 12, 55, 273]),
    ],
)
def test_enumerate_trees_counts(single_root, projective, counts):
    found = [len(enumerate_trees(n, single_root=single_root, projective=projective)) for n in range(1, 6)]
    assert found == counts


def test_enumerated_trees_are_acyclic_and_projectivity_is_the_non_crossing_one():
    # 1 -> 3 crosses ROOT -> 2: non-projective, though acyclic.
    assert (2, 0, 1) in enumerate_trees(3, projective=False)
    assert (2, 0, 1) not in enumerate_trees(3, projective=True)
    assert (2, 3, 0) in enumerate_trees(3, projective=True)  # ROOT -> 3 -> 2 -> 1
    assert (2, 1, 0) not in enumerate_trees(3, single_root=False)  # 1 <-> 2 cycle
    assert (0, 0, 0) in enumerate_trees(3, single_root=False)
    assert (0, 0, 0) not in enumerate_trees(3, single_root=True)


def test_valid_heads():
    valid = valid_heads(torch.tensor([[True, True, True], [True, False, False]]))
    expected_first = torch.tensor([[1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0]], dtype=torch.bool)
    expected_second = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(valid[0], expected_first)
    assert torch.equal(valid[1], expected_second)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_head_selection_is_a_softmax_over_valid_heads(temperature):
    scores, mask = batch(MIXED_LENGTHS, seed=0)
    log_probs = head_selection_log_marginals(scores, mask, temperature=temperature)
    probs = log_probs.exp()
    for b, length in enumerate(MIXED_LENGTHS):
        for m in range(length):
            heads = [h for h in range(length + 1) if h != m + 1]
            expected = torch.zeros(scores.shape[2], dtype=torch.float64)
            expected[heads] = (scores[b, m, heads] / temperature).softmax(dim=0)
            torch.testing.assert_close(probs[b, m], expected, rtol=0, atol=1e-12)
        assert torch.all(probs[b, length:] == 0)
    assert torch.isfinite(log_probs).all()


def test_head_selection_temperature_flattens_and_sharpens():
    scores, mask = batch([5], seed=1)
    entropy = []
    for temperature in (0.25, 1.0, 4.0, 1e6):
        log_probs = head_selection_log_marginals(scores, mask, temperature=temperature)
        entropy.append(-(log_probs.exp() * log_probs).sum().item())
    assert entropy[0] < entropy[1] < entropy[2] < entropy[3]
    assert entropy[3] == pytest.approx(5 * math.log(5), abs=1e-5)  # uniform over 5 valid heads per word


@pytest.mark.parametrize("single_root", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_log_partition_equals_logsumexp_over_all_trees(single_root, seed):
    for lengths in ([1], [2], [3], [4], [5], MIXED_LENGTHS):
        scores, mask = batch(lengths, seed=seed)
        log_partition = matrix_tree_log_partition(scores, mask, single_root=single_root)
        expected = torch.stack(
            [
                brute_force(scores[b], length, single_root=single_root)[1].logsumexp(0)
                for b, length in enumerate(lengths)
            ]
        )
        torch.testing.assert_close(log_partition, expected, rtol=0, atol=1e-9)


def test_root_variants_differ():
    scores, mask = batch([4], seed=3)
    single = matrix_tree_log_partition(scores, mask, single_root=True)
    multi = matrix_tree_log_partition(scores, mask, single_root=False)
    assert (multi - single).item() > 1e-3  # the single-root trees are a strict subset


@pytest.mark.parametrize("single_root", [True, False])
@pytest.mark.parametrize("scale", [100.0, 1000.0])
def test_log_partition_is_finite_and_exact_for_large_scores(single_root, scale):
    scores, mask = batch(MIXED_LENGTHS, seed=4, scale=scale)
    log_partition = matrix_tree_log_partition(scores, mask, single_root=single_root)
    expected = torch.stack(
        [
            brute_force(scores[b], length, single_root=single_root)[1].logsumexp(0)
            for b, length in enumerate(MIXED_LENGTHS)
        ]
    )
    assert torch.isfinite(log_partition).all()
    torch.testing.assert_close(log_partition, expected, rtol=1e-12, atol=1e-9)
    marginals = matrix_tree_marginals(scores, mask, single_root=single_root)
    assert torch.isfinite(marginals).all()


@pytest.mark.parametrize("single_root", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_marginals_equal_enumeration(single_root, seed):
    scores, mask = batch(MIXED_LENGTHS, seed=seed)
    marginals = matrix_tree_marginals(scores, mask, single_root=single_root)
    valid = valid_heads(mask)
    for b, length in enumerate(MIXED_LENGTHS):
        expected = brute_force_marginals(scores[b], length, single_root)
        torch.testing.assert_close(marginals[b], expected, rtol=0, atol=1e-10)
        torch.testing.assert_close(marginals[b, :length].sum(-1), torch.ones(length, dtype=torch.float64))
    assert torch.all(marginals[~valid] == 0)
    assert torch.all(marginals[~mask] == 0)
    assert not marginals.requires_grad


def test_single_root_marginals_put_total_mass_one_on_root():
    scores, mask = batch(MIXED_LENGTHS, seed=5)
    root_mass = matrix_tree_marginals(scores, mask, single_root=True)[:, :, 0].sum(-1)
    torch.testing.assert_close(root_mass, torch.ones(3, dtype=torch.float64))
    multi_root_mass = matrix_tree_marginals(scores, mask, single_root=False)[:, :, 0].sum(-1)
    assert multi_root_mass[0].item() > 1.0 + 1e-6


@pytest.mark.parametrize("single_root", [True, False])
def test_log_partition_gradcheck(single_root):
    scores, mask = batch([3, 2], seed=6, pad=0.0)
    scores.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s: matrix_tree_log_partition(s, mask, single_root=single_root), (scores,), eps=1e-6, atol=1e-7
    )


def test_padding_never_reaches_results_or_gradients():
    clean, mask = batch(MIXED_LENGTHS, seed=7, pad=0.0)
    for pad in (float("nan"), float("inf"), -float("inf"), 1e4):
        dirty, _ = batch(MIXED_LENGTHS, seed=7, pad=pad)
        dirty.requires_grad_(True)
        log_partition = matrix_tree_log_partition(dirty, mask)
        torch.testing.assert_close(log_partition, matrix_tree_log_partition(clean, mask), rtol=0, atol=0)
        (gradient,) = torch.autograd.grad(log_partition.sum(), dirty)
        assert torch.all(gradient[~valid_heads(mask)] == 0)
        head_selection = head_selection_log_marginals(dirty, mask)
        assert torch.equal(head_selection, head_selection_log_marginals(clean, mask))
        assert torch.equal(decode_mst(dirty, mask), decode_mst(clean, mask))
        assert torch.equal(decode_eisner(dirty, mask), decode_eisner(clean, mask))


def test_float32_in_float32_out():
    scores, mask = batch(MIXED_LENGTHS, seed=8, pad=0.0)
    log_partition = matrix_tree_log_partition(scores.float(), mask)
    assert log_partition.dtype == torch.float32
    torch.testing.assert_close(log_partition.double(), matrix_tree_log_partition(scores, mask), rtol=1e-6, atol=1e-5)
    assert matrix_tree_marginals(scores.float(), mask).dtype == torch.float32


def best_tree(scores: torch.Tensor, length: int, **tree_kinds) -> tuple[int, ...]:
    trees, tree_scores = brute_force(scores, length, **tree_kinds)
    return trees[int(tree_scores.argmax())]


@pytest.mark.parametrize("single_root", [True, False])
def test_decode_mst_is_the_best_tree(single_root):
    for seed in range(40):
        lengths = [5, 4, 3, 2, 1]
        scores, mask = batch(lengths, seed=seed, scale=1.0 + seed % 4)
        heads = decode_mst(scores, mask, single_root=single_root)
        for b, length in enumerate(lengths):
            assert tuple(heads[b, :length].tolist()) == best_tree(scores[b], length, single_root=single_root)
            assert torch.all(heads[b, length:] == 0)


def test_decode_mst_single_root_when_the_unconstrained_tree_has_many_root_children():
    # Every word prefers ROOT, so the unconstrained tree is flat and the constraint must bite.
    scores, mask = batch([5], seed=9)
    scores[..., 0] += 5.0
    assert (decode_mst(scores, mask, single_root=False) == 0).sum() == 5
    heads = decode_mst(scores, mask)
    assert (heads == 0).sum() == 1
    assert tuple(heads[0].tolist()) == best_tree(scores[0], 5)


def test_decode_eisner_is_the_best_projective_tree():
    for seed in range(40):
        lengths = [5, 4, 3, 2, 1]
        scores, mask = batch(lengths, seed=100 + seed, scale=1.0 + seed % 4)
        heads = decode_eisner(scores, mask)
        for b, length in enumerate(lengths):
            assert tuple(heads[b, :length].tolist()) == best_tree(scores[b], length, projective=True)
            assert torch.all(heads[b, length:] == 0)


def is_single_root_tree(heads: list[int]) -> bool:
    parent = [0, *heads]
    for start in range(1, len(parent)):
        node, steps = start, 0
        while node != 0 and steps <= len(parent):
            node, steps = parent[node], steps + 1
        if node != 0:
            return False
    return heads.count(0) == 1


def test_long_sentences_give_valid_trees_that_no_nearby_tree_beats():
    generator = torch.Generator().manual_seed(10)
    for _ in range(5):
        scores = torch.randn(30, 31, generator=generator, dtype=torch.float64)
        mst, projective = chu_liu_edmonds(scores), eisner(scores)
        assert is_single_root_tree(mst.tolist())
        assert is_single_root_tree(projective.tolist())
        best = tree_score(scores, mst)
        assert best >= tree_score(scores, projective)  # projective trees are a subset
        for _ in range(5):
            # The best trees of perturbed scores are other valid trees near the optimum.
            noisy = scores + 0.3 * torch.randn(30, 31, generator=generator, dtype=torch.float64)
            assert best >= tree_score(scores, chu_liu_edmonds(noisy)) - 1e-12
            assert tree_score(scores, projective) >= tree_score(scores, eisner(noisy)) - 1e-12


def test_empty_sentence():
    scores, mask = batch([0, 2], seed=11, pad=0.0)
    torch.testing.assert_close(matrix_tree_log_partition(scores, mask)[0], torch.tensor(0.0, dtype=torch.float64))
    assert torch.all(matrix_tree_marginals(scores, mask)[0] == 0)
    assert torch.all(decode_mst(scores, mask)[0] == 0)
    assert torch.all(decode_eisner(scores, mask)[0] == 0)
