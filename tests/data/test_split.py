"""Stratified hold-out splits and class-balanced subsets."""

from __future__ import annotations

import pytest
import torch

from kdlab.core.errors import ConfigError
from kdlab.data import stratified_split, stratified_subset


def _imbalanced_labels() -> torch.Tensor:
    # Classes of 50, 31, 7, 1 and 3 examples with non-contiguous label values, shuffled.
    counts = {0: 50, 1: 31, 4: 7, 9: 1, 12: 3}
    labels = torch.cat([torch.full((n,), c) for c, n in counts.items()])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]


@pytest.mark.parametrize("holdout", [0.2, 0.5, 0.07, 13, 1, 91])
def test_split_is_disjoint_complete_sorted_and_stratified(holdout: float | int) -> None:
    labels = _imbalanced_labels()
    keep, held = stratified_split(labels, holdout, seed=3)
    total = len(labels)
    expected = holdout if isinstance(holdout, int) else round(holdout * total)
    assert len(held) == expected and len(keep) == total - expected
    assert torch.equal(torch.sort(torch.cat([keep, held])).values, torch.arange(total))
    assert torch.equal(keep, keep.sort().values) and torch.equal(held, held.sort().values)
    assert keep.dtype == held.dtype == torch.int64
    for c in labels.unique():
        exact = (labels == c).sum().item() * expected / total
        assert abs((labels[held] == c).sum().item() - exact) < 1


def test_split_is_deterministic_from_the_seed() -> None:
    labels = torch.arange(1000) % 7
    first = stratified_split(labels, 0.3, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(first, stratified_split(labels, 0.3, seed=5), strict=True))
    assert not torch.equal(first[1], stratified_split(labels, 0.3, seed=6)[1])


@pytest.mark.parametrize("holdout", [0.0, 1.0, -0.1, 1.5, 0, 92, -3, True, "0.2", 0.001])
def test_split_rejects_bad_holdout(holdout: object) -> None:
    with pytest.raises(ConfigError, match="holdout"):
        stratified_split(_imbalanced_labels(), holdout, seed=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, 10, 25, 37, 60, 92])
def test_subset_is_balanced_and_fills_up_from_large_classes(size: int) -> None:
    labels = _imbalanced_labels()
    chosen = stratified_subset(labels, size, seed=1)
    assert len(chosen) == size and len(chosen.unique()) == size and torch.equal(chosen, chosen.sort().values)
    counts = {c: (labels[chosen] == c).sum().item() for c in labels.unique().tolist()}
    available = {c: (labels == c).sum().item() for c in counts}
    not_full = [counts[c] for c in counts if counts[c] < available[c]]
    # No class has more than one example above a class that still had examples to give: the others
    # (small classes) gave all they have.
    assert all(count <= min(not_full, default=size) + 1 for count in counts.values())


def test_subset_of_balanced_labels_and_determinism() -> None:
    labels = torch.arange(60000) % 10
    chosen = stratified_subset(labels, 200, seed=0)
    assert labels[chosen].bincount().tolist() == [20] * 10
    assert torch.equal(chosen, stratified_subset(labels, 200, seed=0))
    assert not torch.equal(chosen, stratified_subset(labels, 200, seed=1))


@pytest.mark.parametrize("size", [0, -1, 93, 2.5, True])
def test_subset_rejects_bad_sizes(size: object) -> None:
    with pytest.raises(ConfigError, match=r"\[1, 92\]"):
        stratified_subset(_imbalanced_labels(), size, seed=0)  # type: ignore[arg-type]
