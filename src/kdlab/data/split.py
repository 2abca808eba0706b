"""Stratified splits: hold out part of a data set, or draw a class-balanced labelled subset."""

from __future__ import annotations

import torch

from kdlab.core.errors import ConfigError


def _check_labels(labels: torch.Tensor) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.is_floating_point():
        raise ConfigError(f"labels must be a 1-D integer tensor, got {getattr(labels, 'shape', type(labels))}.")
    return labels.detach().cpu()


def _holdout_count(holdout: float | int, total: int) -> int:
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)):
        raise ConfigError(f"holdout must be a fraction in (0, 1) or a count in [1, N-1]; got {holdout!r}.")
    if isinstance(holdout, float):
        if not 0.0 < holdout < 1.0:
            raise ConfigError(
                f"holdout fraction {holdout} is outside (0, 1); use e.g. 0.1 for 10 %, or an integer count."
            )
        count = round(holdout * total)
    else:
        count = holdout
    if not 1 <= count <= total - 1:
        raise ConfigError(
            f"holdout {holdout!r} gives {count} of {total} examples; both parts must be non-empty: use a "
            f"count in [1, {total - 1}] or a fraction that leaves at least one example on each side."
        )
    return count


def _class_members(labels: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
    """The indices of each class, each list in a random order drawn from ``generator``."""
    _, inverse = torch.unique(labels, return_inverse=True)
    order = torch.argsort(inverse, stable=True)
    groups = order.split(torch.bincount(inverse).tolist())
    return [g[torch.randperm(len(g), generator=generator)] for g in groups]


def stratified_split(labels: torch.Tensor, holdout: float | int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(N)`` into ``(keep, holdout)`` index tensors with per-class proportions preserved.

    ``holdout`` is a fraction of N in (0, 1) or an absolute count. Each class gives up its exact share
    ``n_c * holdout_count / N`` rounded down, and the remainder goes to the classes with the largest
    fractional shares (largest-remainder rounding), so every class is within one example of its exact
    share and the total is exact. Both tensors are sorted ascending; the result depends only on ``seed``.
    """
    labels = _check_labels(labels)
    total = labels.numel()
    count = _holdout_count(holdout, total)
    generator = torch.Generator().manual_seed(seed)
    groups = _class_members(labels, generator)
    sizes = torch.tensor([len(g) for g in groups])
    quotas, remainders = (sizes * count) // total, (sizes * count) % total
    extra = count - int(quotas.sum())
    # Ties in the remainder are broken by a seeded shuffle, not by class order.
    shuffle = torch.randperm(len(groups), generator=generator)
    ranked = shuffle[torch.argsort(remainders[shuffle], descending=True, stable=True)]
    quotas[ranked[:extra]] += 1
    held = torch.cat([g[:q] for g, q in zip(groups, quotas.tolist(), strict=True)])
    mask = torch.zeros(total, dtype=torch.bool)
    mask[held] = True
    return torch.nonzero(~mask).flatten(), torch.nonzero(mask).flatten()


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """``size`` indices, sorted, drawn with the classes as balanced as possible (e.g. 200 labelled examples).

    Every class gets ``size // K`` examples (one more for some, chosen by the seed); a class with fewer
    examples than its share gives all it has and the rest is spread over the other classes.
    """
    labels = _check_labels(labels)
    total = labels.numel()
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= total:
        raise ConfigError(f"subset size {size!r} is invalid: use an integer in [1, {total}] (the number of examples).")
    generator = torch.Generator().manual_seed(seed)
    groups = _class_members(labels, generator)
    shuffle = torch.randperm(len(groups), generator=generator).tolist()
    order = sorted(shuffle, key=lambda c: len(groups[c]))  # smallest classes first: they may fill up
    quotas, left = [0] * len(groups), size
    for position, c in enumerate(order):
        quotas[c] = min(len(groups[c]), left // (len(order) - position))
        left -= quotas[c]
    chosen = torch.cat([g[:q] for g, q in zip(groups, quotas, strict=True)])
    return torch.sort(chosen).values
