"""The distillation loss on the plane through three weight vectors (Stanton et al. 2021, Fig. 6c).

The plane through the teacher θ_t, the student at initialisation θ_0 and the trained student θ_1 is
spanned by ``u = (θ_0 − θ_t)/‖·‖`` and ``v`` = the part of ``θ_1 − θ_t`` orthogonal to ``u``, normalised
(Gram–Schmidt). Only trainable parameters move; buffers (BatchNorm statistics) are those of the model
passed in, so the plot is exact for LayerNorm/GroupNorm nets — the nets the paper's optimisation study uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from kdlab.reporting.plotting import pyplot, save_png


def flat_parameters(state: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    return torch.cat([state[n].detach().double().reshape(-1) for n in names])


@dataclass
class Surface:
    """``loss[i, j]`` at plane coordinates ``(xs[j], ys[i])``; ``points`` = plane coordinates of the three
    weight vectors (teacher at the origin)."""

    xs: torch.Tensor
    ys: torch.Tensor
    loss: torch.Tensor
    points: dict[str, tuple[float, float]]


def plane(
    teacher: torch.Tensor, init: torch.Tensor, final: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, dict[str, tuple[float, float]]]:
    """Orthonormal ``u, v`` through the three flat vectors (teacher at the origin), and their coordinates."""
    d0, d1 = init - teacher, final - teacher
    if d0.norm() == 0:
        raise ValueError("the student's initial weights equal the teacher's: the plane is undefined")
    u = d0 / d0.norm()
    w = d1 - (d1 @ u) * u
    if w.norm() <= 1e-12 * d1.norm().clamp_min(1e-300):
        raise ValueError("the three weight vectors are collinear: the plane is undefined")
    v = w / w.norm()
    points = {"teacher": (0.0, 0.0), "init": (float(d0 @ u), 0.0), "final": (float(d1 @ u), float(d1 @ v))}
    return u, v, points


@torch.no_grad()
def loss_surface(
    model: nn.Module,
    teacher: dict[str, torch.Tensor],
    init: dict[str, torch.Tensor],
    final: dict[str, torch.Tensor],
    loss: Callable[[nn.Module], float],
    *,
    steps: int = 15,
    margin: float = 0.25,
) -> Surface:
    """Evaluate ``loss(model)`` with the model's parameters set to each point of a ``steps × steps`` grid
    covering the three points plus ``margin`` of the span on every side. ``model`` is restored afterwards."""
    names = [n for n, p in model.named_parameters()]
    t, i, f = (flat_parameters(s, names) for s in (teacher, init, final))
    u, v, points = plane(t, i, f)
    px, py = [p[0] for p in points.values()], [p[1] for p in points.values()]
    span_x = max(px) - min(px)
    span_y = max(max(py) - min(py), 0.2 * span_x)
    xs = torch.linspace(min(px) - margin * span_x, max(px) + margin * span_x, steps, dtype=torch.float64)
    ys = torch.linspace(min(py) - margin * span_y, max(py) + margin * span_y, steps, dtype=torch.float64)
    params = dict(model.named_parameters())
    saved = {n: p.detach().clone() for n, p in params.items()}
    values = torch.empty(steps, steps, dtype=torch.float64)
    try:
        for row, y in enumerate(ys):
            for col, x in enumerate(xs):
                _assign(params, names, t + x * u + y * v)
                values[row, col] = loss(model)
    finally:
        for n, p in params.items():
            p.copy_(saved[n])
    return Surface(xs, ys, values, points)


def _assign(params: dict[str, nn.Parameter], names: list[str], flat: torch.Tensor) -> None:
    offset = 0
    for n in names:
        p = params[n]
        p.copy_(flat[offset : offset + p.numel()].view_as(p).to(p.dtype))
        offset += p.numel()


def plot_surface(surface: Surface, path: str, title: str) -> None:
    """A filled contour of log10(loss) with the three points marked, as a PNG."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    z = torch.log10(surface.loss.clamp_min(1e-12)).numpy()
    filled = ax.contourf(surface.xs.numpy(), surface.ys.numpy(), z, levels=20, cmap="viridis")
    fig.colorbar(filled, ax=ax, label="log10 distillation loss")
    markers = {"teacher": ("*", "teacher θ_t"), "init": ("o", "student at init"), "final": ("s", "student trained")}
    for key, (x, y) in surface.points.items():
        marker, label = markers[key]
        ax.plot(x, y, marker, color="white", markeredgecolor="black", markersize=11, label=label)
    ax.set_xlabel("u (towards the initial student)")
    ax.set_ylabel("v")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    save_png(fig, path)
