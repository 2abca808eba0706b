"""Grad-CAM localisation and the teacher-likeness win rate of Ojha et al. (2023, §4.1).

Grad-CAM (Selvaraju et al. 2017) of class c at a layer with activations ``A [B, K, h, w]``:
``α_k = mean_{u,v} ∂y_c/∂A_k(u,v)``, ``L = ReLU(Σ_k α_k A_k)``, upsampled bilinearly to the input size.
A saliency map is a similarity probe here, not a ground-truth attribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.core.modes import eval_mode
from kdlab.training.taps import Taps


def gradcam(model: nn.Module, layer: str, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Grad-CAM maps ``[B, H, W]`` of ``classes`` ``[B]`` (use the ground-truth labels) at module ``layer``
    (a 4-D output), in eval mode; the model's parameters get no gradient."""
    with Taps(model, [layer]) as taps, eval_mode(model), torch.enable_grad():
        inputs = x.detach().requires_grad_(True)  # makes the graph exist even for a frozen model
        logits = model(inputs)
        activations = taps.collect()[layer]
        if activations.dim() != 4:
            raise ValueError(f"Grad-CAM needs a [B, K, h, w] layer; {layer!r} gives {tuple(activations.shape)}")
        score = logits.gather(1, classes.view(-1, 1).to(logits.device)).sum()
        (grads,) = torch.autograd.grad(score, activations)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(1, keepdim=True)).detach()
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def cam_win_rate(
    teacher: tuple[nn.Module, str],
    candidate: tuple[nn.Module, str],
    reference: tuple[nn.Module, str],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 200,
) -> float:
    """% of images whose ``candidate`` CAM is closer (cosine) to the teacher's than the ``reference`` CAM is;
    each argument is ``(model, layer)``. Distilled vs independent student measures what distillation adds;
    a second independent student in place of the distilled one should sit near 50 %."""
    wins = 0
    for s in range(0, len(x), batch_size):
        xb, yb = x[s : s + batch_size], y[s : s + batch_size]
        maps = [gradcam(model, layer, xb, yb).flatten(1) for model, layer in (teacher, candidate, reference)]
        closer = F.cosine_similarity(maps[0], maps[1], dim=1) > F.cosine_similarity(maps[0], maps[2], dim=1)
        wins += int(closer.sum())
    return 100.0 * wins / len(x)
