"""Decision-boundary similarity (Somepalli et al. 2022, as used by Ojha et al. 2023, §6).

Take three images, span the plane through them, classify a ``steps × steps`` grid of points of that plane
with two models and compare the predicted regions by IoU; average over random triplets.
"""

from __future__ import annotations

import torch
from torch import nn


def plane_grid(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, steps: int = 50, margin: float = 0.1
) -> tuple[torch.Tensor, dict[str, tuple[float, float]]]:
    """``steps²`` points (shaped like ``a``) on the plane through images ``a, b, c``, covering the triplet's
    bounding box in plane coordinates plus ``margin`` of its extent on every side; and the three points'
    coordinates. The basis is orthonormal (Gram–Schmidt on ``b − a`` and ``c − a``); ``a`` is the origin."""
    d1, d2 = (b - a).flatten().double(), (c - a).flatten().double()
    u = d1 / d1.norm().clamp_min(1e-12)
    w = d2 - (d2 @ u) * u
    v = w / w.norm().clamp_min(1e-12)
    coords = {"a": (0.0, 0.0), "b": (float(d1 @ u), 0.0), "c": (float(d2 @ u), float(d2 @ v))}
    xs, ys = [p[0] for p in coords.values()], [p[1] for p in coords.values()]
    span_x, span_y = max(xs) - min(xs), max(ys) - min(ys)
    gx = torch.linspace(min(xs) - margin * span_x, max(xs) + margin * span_x, steps, dtype=torch.float64)
    gy = torch.linspace(min(ys) - margin * span_y, max(ys) + margin * span_y, steps, dtype=torch.float64)
    mesh_y, mesh_x = torch.meshgrid(gy, gx, indexing="ij")
    points = a.flatten().double() + mesh_x.reshape(-1, 1) * u + mesh_y.reshape(-1, 1) * v
    return points.to(a.dtype).view(steps * steps, *a.shape), coords


def region_iou(pred_a: torch.Tensor, pred_b: torch.Tensor, num_classes: int) -> float:
    """``Σ_c |R_c^a ∩ R_c^b| / Σ_c |R_c^a ∪ R_c^b|`` for two label maps (any shape, same shape). For a partition
    this equals ``p / (2 − p)`` with ``p`` the share of points where the labels agree."""
    inter = union = 0
    for c in range(num_classes):
        in_a, in_b = pred_a == c, pred_b == c
        inter += int((in_a & in_b).sum())
        union += int((in_a | in_b).sum())
    return inter / union if union else 1.0


@torch.no_grad()
def boundary_ious(
    reference: nn.Module,
    models: dict[str, nn.Module],
    images: torch.Tensor,
    num_classes: int,
    *,
    triplets: int = 50,
    steps: int = 50,
    margin: float = 0.1,
    seed: int = 0,
    batch_size: int = 500,
) -> dict[str, torch.Tensor]:
    """Per model: the region IoU with ``reference`` on each of ``triplets`` random triplets of ``images``
    (``[N, C, H, W]``, N ≥ 3), ``[triplets]`` float64 — the same triplets for every model and every call with
    ``seed``; the reference classifies each plane once."""
    if len(images) < 3:
        raise ValueError(f"decision-boundary similarity needs at least 3 images, got {len(images)}")
    g = torch.Generator().manual_seed(seed)
    scores: dict[str, list[float]] = {name: [] for name in models}
    for model in (reference, *models.values()):
        model.eval()
    for _ in range(triplets):
        i, j, k = torch.randperm(len(images), generator=g)[:3].tolist()
        points, _ = plane_grid(images[i], images[j], images[k], steps, margin)

        def predict(model: nn.Module, points: torch.Tensor = points) -> torch.Tensor:
            return torch.cat([model(points[s : s + batch_size]).argmax(-1) for s in range(0, len(points), batch_size)])

        target = predict(reference)
        for name, model in models.items():
            scores[name].append(region_iou(target, predict(model), num_classes))
    return {name: torch.tensor(values, dtype=torch.float64) for name, values in scores.items()}


def boundary_similarities(
    reference: nn.Module, models: dict[str, nn.Module], images: torch.Tensor, num_classes: int, **options: int | float
) -> dict[str, dict[str, float]]:
    """Per model: mean and std of the region IoU with ``reference`` over the triplets of :func:`boundary_ious`."""
    return summarise(boundary_ious(reference, models, images, num_classes, **options))  # type: ignore[arg-type]


def summarise(ious: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Per model: mean and std of its per-triplet IoUs, and their number."""
    return {name: {"iou": float(t.mean()), "std": float(t.std()) if len(t) > 1 else 0.0, "triplets": float(len(t))}
            for name, t in ious.items()}  # fmt: skip


def boundary_similarity(
    model_a: nn.Module, model_b: nn.Module, images: torch.Tensor, num_classes: int, **options: int | float
) -> dict[str, float]:
    """Mean and std of the region IoU of two models (see :func:`boundary_similarities`)."""
    return boundary_similarities(model_a, {"b": model_b}, images, num_classes, **options)["b"]  # type: ignore[arg-type]
