"""Does a student share its teacher's adversarial vulnerability? (Ojha et al. 2023, §4.2)

Attacks are iterative FGSM on the teacher in pixel space ([0, 1]): k steps of size 2.5·ε/k, each projected
onto the ε-ball around the clean image and the valid pixel range. A model is "fooled" when its prediction
changes from its own clean prediction; a student's fooling rate is measured only on the images that fooled
the teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.core.modes import eval_mode


def ifgsm(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, steps: int = 5, step: float | None = None
) -> torch.Tensor:
    """Untargeted I-FGSM maximising the cross-entropy of the labels ``y``; returns the adversarial images."""
    step = 2.5 * epsilon / steps if step is None else step
    adv = x.detach().clone()
    with eval_mode(model), torch.enable_grad():
        for _ in range(steps):
            adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(model(adv), y), adv)
            adv = adv.detach() + step * grad.sign()
            adv = torch.minimum(torch.maximum(adv, x - epsilon), x + epsilon).clamp(0.0, 1.0)
    return adv.detach()


@torch.no_grad()
def changed(model: nn.Module, clean: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: the model's prediction on ``adv`` differs from its prediction on ``clean``."""
    with eval_mode(model):
        return model(clean).argmax(-1) != model(adv).argmax(-1)


def calibrate_epsilon(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: float = 0.85, high: float = 0.5, iterations: int = 10
) -> tuple[float, float]:
    """ε such that I-FGSM fools ``model`` on about ``target`` of ``x``, by bisection on [0, high];
    returns (ε, the fooling rate reached)."""
    low, best = 0.0, (high, float(changed(model, x, ifgsm(model, x, y, high)).double().mean()))
    for _ in range(iterations):
        mid = (low + high) / 2
        rate = float(changed(model, x, ifgsm(model, x, y, mid)).double().mean())
        if abs(rate - target) < abs(best[1] - target):
            best = (mid, rate)
        low, high = (mid, high) if rate < target else (low, mid)
    return best


def fooled_per_image(
    attacked: nn.Module, models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, epsilon: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Attack ``attacked`` (the teacher, or an unrelated control network): which images fooled it ``[N]`` bool, and
    for each model whether it is fooled on each of those images ``[M]`` bool (M = how many fooled ``attacked``)."""
    adv = ifgsm(attacked, x, y, epsilon)
    fooled = changed(attacked, x, adv)
    empty = torch.zeros(0, dtype=torch.bool)
    return fooled, {name: changed(m, x[fooled], adv[fooled]) if fooled.any() else empty for name, m in models.items()}


def rates(fooled: torch.Tensor, hits: dict[str, torch.Tensor]) -> dict[str, float]:
    """In % from :func:`fooled_per_image`: how often the attacked network is fooled (key ``attacked``; ``n`` = how
    many images), and each model's rate on those images (NaN when none fooled it)."""
    out = {"attacked": 100.0 * float(fooled.double().mean()), "n": float(fooled.sum())}
    return out | {name: 100.0 * float(h.double().mean()) if len(h) else float("nan") for name, h in hits.items()}


def fooling_rates(
    attacked: nn.Module, students: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, epsilon: float
) -> dict[str, float]:
    """Attack ``attacked`` (the teacher, or an unrelated control network) and report :func:`rates`."""
    return rates(*fooled_per_image(attacked, students, x, y, epsilon))
