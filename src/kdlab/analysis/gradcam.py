"""Grad-CAM localisation and the teacher-likeness win rate of Ojha et al. (2023, §4.1), ties split.

Grad-CAM (Selvaraju et al. 2017) of class c at a layer with activations ``A [B, K, h, w]``:
``α_k = mean_{u,v} ∂y_c/∂A_k(u,v)``, ``L = ReLU(Σ_k α_k A_k)``, upsampled bilinearly to the input size.
A saliency map is a similarity probe here, not a ground-truth attribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.analysis.stats import paired_scores
from kdlab.core.modes import eval_mode
from kdlab.training.taps import Taps


def gradcam(
    model: nn.Module, layer: str, x: torch.Tensor, classes: torch.Tensor, upsample: bool = True
) -> torch.Tensor:
    """Grad-CAM maps ``[B, H, W]`` of ``classes`` ``[B]`` (use the ground-truth labels) at module ``layer``
    (a 4-D output), in eval mode, upsampled to the input size (``upsample=False``: at the layer's own ``[h, w]``);
    the model's parameters get no gradient."""
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
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0] if upsample else cam[:, 0]


MEASURES = ("cosine", "cosine, layer resolution", "Pearson")
"""The CAM similarities :func:`cam_similarities` gives: the statistic (cosine of the upsampled maps), and two
variants that tell whether a result depends on the upsampling or on the similarity measure."""


def _centred(maps: torch.Tensor) -> torch.Tensor:
    return maps - maps.mean(1, keepdim=True)


def cam_similarities(
    teacher: tuple[nn.Module, str],
    model: tuple[nn.Module, str],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 200,
) -> dict[str, torch.Tensor]:
    """Per image ``[N]``, the similarity of ``model``'s Grad-CAM (true class) to the teacher's in every one of
    :data:`MEASURES`: cosine of the maps upsampled to the input; cosine at the layers' own resolution (the larger
    map average-pooled to the smaller one's size when they differ); Pearson correlation of the upsampled maps. Each
    argument is ``(model, layer)``."""
    out: dict[str, list[torch.Tensor]] = {m: [] for m in MEASURES}
    for s in range(0, len(x), batch_size):
        xb, yb = x[s : s + batch_size], y[s : s + batch_size]
        native = [gradcam(net, layer, xb, yb, upsample=False)[:, None] for net, layer in (teacher, model)]
        size = min(native[0].shape[-2:], native[1].shape[-2:])
        pooled = [F.adaptive_avg_pool2d(m, size).flatten(1) for m in native]
        up = [F.interpolate(m, size=xb.shape[-2:], mode="bilinear", align_corners=False).flatten(1) for m in native]
        out["cosine"].append(F.cosine_similarity(up[0], up[1], dim=1))
        out["cosine, layer resolution"].append(F.cosine_similarity(pooled[0], pooled[1], dim=1))
        out["Pearson"].append(F.cosine_similarity(_centred(up[0]), _centred(up[1]), dim=1))
    return {m: torch.cat(v) for m, v in out.items()}


def cam_win_rate(
    teacher: tuple[nn.Module, str],
    candidate: tuple[nn.Module, str],
    reference: tuple[nn.Module, str],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 200,
) -> float:
    """% of images whose ``candidate`` CAM is closer (cosine) to the teacher's than the ``reference`` CAM is, a tie
    counted half; each argument is ``(model, layer)``. A model against itself scores exactly 50 %, and a comparison
    and its reverse add up to 100 %."""
    sims = [cam_similarities(teacher, model, x, y, batch_size)["cosine"] for model in (candidate, reference)]
    return 100.0 * float(paired_scores(*sims).mean())
