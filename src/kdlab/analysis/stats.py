"""The statistics every what-transferred verdict rests on: per-image scores with ties split, bootstrap intervals
that resample both the images and the models' seeds, and one verdict rule.

A paired comparison scores each image 1 (the candidate wins), ½ (a tie) or 0 (it loses), so that a model against
itself scores exactly 50 % and a comparison and its reverse add up to 100 %. A figure over several models is the mean
over every (candidate seed × reference seed) pair; its interval comes from a bootstrap that draws, in each round, the
seeds of every model axis and the images with replacement (the seeds matter: two independent students of the same
recipe can differ by far more than the image sampling explains).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

ROUNDS = 2000
CONFIDENCE = 0.95
RESAMPLED = "images and model seeds"
RULE = (
    "held: the interval lies wholly outside the control's interval, in the paper's direction; did not hold: wholly "
    "outside it in the other direction, or wholly on the weak side of the paper's effect size; not conclusive: "
    "otherwise (the intervals overlap)"
)


def paired_scores(candidate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """1 where ``candidate > reference``, ½ where they are equal, 0 elsewhere (any shape, float32)."""
    return (candidate > reference).float() + 0.5 * (candidate == reference).float()


@dataclass(frozen=True)
class Estimate:
    """A statistic (in %) over model pairs and images: its mean, the spread of the pairs' values, a bootstrap
    interval, and the ties among the per-image comparisons."""

    mean: float
    std: float
    low: float
    high: float
    pairs: int
    ties: int

    def show(self, signed: bool = False) -> str:
        """``mean ± std [low, high]``; ``signed``: a difference, its mean and bounds with their signs."""
        f = "+.2f" if signed else ".2f"
        return f"{self.mean:{f}} ± {self.std:.2f} [{self.low:{f}}, {self.high:{f}}]"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_interval(
    scores: torch.Tensor, rounds: int = ROUNDS, confidence: float = CONFIDENCE, seed: int = 0
) -> tuple[float, float]:
    """The percentile interval of ``100 · scores.mean()`` when every axis of ``scores`` (model axes first, images
    last: ``[A, ..., N]``) is drawn again with replacement in each of ``rounds`` rounds."""
    generator = torch.Generator().manual_seed(seed)
    means = torch.empty(rounds, dtype=torch.float64)
    for r in range(rounds):
        drawn = scores
        for axis, size in enumerate(scores.shape):
            drawn = drawn.index_select(axis, torch.randint(size, (size,), generator=generator))
        means[r] = drawn.double().mean()
    tail = (1.0 - confidence) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1.0 - tail], dtype=torch.float64)).tolist()
    return 100.0 * low, 100.0 * high


def estimate(scores: torch.Tensor, ties: int, **options: Any) -> Estimate:
    """The :class:`Estimate` of per-image ``scores`` ``[..., N]`` whose leading axes are model axes (the pairs:
    every combination of them); ``ties`` counted by the caller."""
    per_pair = 100.0 * scores.reshape(-1, scores.shape[-1]).double().mean(-1)
    std = float(per_pair.std()) if per_pair.numel() > 1 else 0.0
    low, high = bootstrap_interval(scores, **options)
    return Estimate(float(per_pair.mean()), std, low, high, per_pair.numel(), ties)


def verdict(effect: Estimate, control: Estimate, *, higher: bool = True, paper: float | None = None) -> str:
    """``held``, ``did not hold`` or ``not conclusive`` by :data:`RULE`; ``higher``: the paper's direction;
    ``paper``: its effect size on the same scale, if it gives one."""
    above, below = effect.low > control.high, effect.high < control.low
    toward, away = (above, below) if higher else (below, above)
    short_of_paper = paper is not None and (effect.high < paper if higher else effect.low > paper)
    if away or short_of_paper:
        return "did not hold"
    return "held" if toward else "not conclusive"
