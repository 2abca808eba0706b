"""Relational distillation losses: the student matches relations between the examples of a batch.

Every function takes ``student`` ``[B, ...]`` and ``teacher`` ``[B, ...]`` features of one layer, flattens
each example to a vector (sizes may differ between student and teacher: no regressor is needed), and
returns a scalar. The teacher is detached; everything runs in float32 or better with autocast off (a
bf16 Gram matrix would lose the small differences these losses are made of).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from kdlab.losses.logits import at_least_float32

Edges = Literal["all", "intra", "inter"]

# Degrees ≤ 0 (possible only when features have negative entries) are clamped here before D^{-1/2}.
DEGREE_EPS = 1e-12


def _flat(x: torch.Tensor) -> torch.Tensor:
    return at_least_float32(x).flatten(1)


def _no_autocast(x: torch.Tensor) -> torch.autocast:
    return torch.autocast(x.device.type, enabled=False)


def _cosines(x: torch.Tensor) -> torch.Tensor:
    """``[B, B]`` cosine similarities of the flattened rows (a zero row has cosine 0 with everything)."""
    unit = F.normalize(_flat(x), dim=1)
    return unit @ unit.T


def sp_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Similarity-preserving KD (Tung & Mori, ICCV 2019): ``‖G̃_s − G̃_t‖²_F / B²``.

    ``G = F Fᵀ`` on the flattened features ``F`` ``[B, d]``, ``G̃`` = ``G`` with each row L2-normalised.
    Invariant to a global positive scale and to rotations of either feature space (not to a per-example
    scale: row normalisation removes the row's own scale but keeps the column scales).
    """
    with _no_autocast(student):
        s, t = _flat(student), _flat(teacher.detach())
        g_s, g_t = F.normalize(s @ s.T, dim=1), F.normalize(t @ t.T, dim=1)
        return (g_s - g_t).square().sum() / s.shape[0] ** 2


def _distances(x: torch.Tensor) -> torch.Tensor:
    """Off-diagonal Euclidean distances ``[B(B−1)]`` (squared distances clamped at 1e-12, as Park et al.)."""
    sq = x.square().sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(1e-12).sqrt()
    off = ~torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    return d[off]


def rkd_distance_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD distance term (Park et al., CVPR 2019): ``mean_{i≠j} huber(ψ_s(i,j), ψ_t(i,j))``.

    ``ψ(i,j) = ‖x_i − x_j‖ / μ``, μ = the mean of the off-diagonal (positive) distances; Huber with δ = 1
    (smooth-L1). The mean runs over the B(B−1) off-diagonal pairs, as graph_kd's RKD-D (Park's code also
    averages the zero diagonal: a factor (B−1)/B). Invariant to a global scale of either embedding.
    """
    with _no_autocast(student):
        s = _flat(student)
        if s.shape[0] < 2:  # no pairs (a last batch of one example): nothing to match, and no 0/0
            return s.sum() * 0.0
        d_s, d_t = _distances(s), _distances(_flat(teacher.detach()))
        return F.smooth_l1_loss(d_s / d_s.mean(), d_t / d_t.mean())


def _angles(x: torch.Tensor) -> torch.Tensor:
    """``[B, B, B]``: entry (i, j, k) = cos of the angle at x_i between x_j and x_k (0 where j or k = i)."""
    edges = F.normalize(x[None, :, :] - x[:, None, :], dim=2)  # [i, j] = unit(x_j − x_i)
    return edges @ edges.transpose(1, 2)


def rkd_angle_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD angle term (Park et al., CVPR 2019): ``mean_{i,j,k} huber(cos∠_s(i,j,k), cos∠_t(i,j,k))``.

    The mean runs over all B³ triples as in Park's and RepDistiller's code (degenerate triples are 0 or 1
    for both networks and add nothing). Memory O(B²·d + B³). Invariant to scale and rotation.
    """
    with _no_autocast(student):
        return F.smooth_l1_loss(_angles(_flat(student)), _angles(_flat(teacher.detach())))


def rkd_loss(
    student: torch.Tensor, teacher: torch.Tensor, distance_weight: float = 25.0, angle_weight: float = 50.0
) -> torch.Tensor:
    """RKD-DA (Park et al. 2019): ``distance_weight · L_distance + angle_weight · L_angle`` (25 and 50 there)."""
    loss = distance_weight * rkd_distance_loss(student, teacher)
    return loss + angle_weight * rkd_angle_loss(student, teacher) if angle_weight else loss


def _conditional(x: torch.Tensor, eps: float) -> torch.Tensor:
    """PKT's ``p_{j|i}`` ``[B, B]``: cosine kernel shifted to [0, 1], rows normalised to sum to 1."""
    x = _flat(x)
    unit = x / (x.square().sum(1, keepdim=True).sqrt() + eps)
    kernel = (unit @ unit.T + 1.0) / 2.0
    return kernel / kernel.sum(1, keepdim=True)


def pkt_loss(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018), as the authors' code.

    Kernel ``K(i,j) = (cos(x_i, x_j) + 1) / 2``, conditional ``p_{j|i} = K(i,j) / Σ_j K(i,j)`` (diagonal kept);
    loss ``(1/B²) Σ_{i,j} p^t_{j|i} log((p^t_{j|i} + ε)/(p^s_{j|i} + ε))`` — the mean over the B² entries
    (the paper writes the sum over i, j; RepDistiller's β = 30000 is tuned for this mean). Minimum 0 at equal
    kernels.
    """
    with _no_autocast(student):
        p_s, p_t = _conditional(student, eps), _conditional(teacher.detach(), eps)
        return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()


def topology_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Full topology distillation, FTD (Kang et al., KDD 2021, code ``FTD.get_TD_loss``).

    ``L = Σ_{i,j} (cos(t_i, t_j) − cos(s_i, s_j))²`` over the whole ``[B, B]`` relation matrix — a sum, so it
    grows as B². Invariant to per-example positive scales, rotations and zero-padding of either space.
    """
    with _no_autocast(student):
        return (_cosines(teacher.detach()) - _cosines(student)).square().sum()


def class_edges(labels: torch.Tensor, edges: Edges) -> torch.Tensor | None:
    """GKD's class mask ``[B, B]``: ``Y Yᵀ`` (same class, ``"intra"``) or ``1 − Y Yᵀ`` (``"inter"``); ``"all"``: None.

    Unlabelled examples (label −1) belong to neither mask, so for labelled batches intra + inter = 1.
    """
    if edges == "all":
        return None
    if edges not in ("intra", "inter"):
        raise ValueError(f"edges must be 'all', 'intra' or 'inter', got {edges!r}")
    known = labels >= 0
    same = labels[:, None] == labels[None, :]
    keep = same if edges == "intra" else ~same
    return (keep & known[:, None] & known[None, :]).float()


def gkd_graph(
    features: torch.Tensor,
    *,
    edge_mask: torch.Tensor | None = None,
    k: int | None = None,
    knn_mask: torch.Tensor | None = None,
    power: int = 1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """GKD's normalised similarity graph of one layer (Lassance et al. 2020, ``representations_to_adj``).

    ``features`` ``[B, ...]`` → rows ``x̂_i`` = flattened, L2-normalised; ``W = X̂X̂ᵀ`` with a zero diagonal;
    ``A = D^{-1/2} W D^{-1/2}``, ``D = diag(W 1)`` on the unmasked graph (degrees clamped at ``DEGREE_EPS``:
    with negative features a degree can be ≤ 0, its row and column then scale by ``DEGREE_EPS^{-1/2}`` —
    finite but huge, so tap non-negative, post-ReLU outputs); then ``A ⊙ edge_mask`` (class mask);
    then the k-NN mask: ``knn_mask`` if given (the student reuses the teacher's), else, when ``k < B``,
    ``M`` = the k largest entries of each row of this ``A``, symmetrised ``min(1, M + Mᵀ)``; then ``A^power``.
    Returns ``(A^power [B, B], the k-NN mask or None)``.
    """
    if power < 1:
        raise ValueError(f"power must be ≥ 1, got {power}")
    with _no_autocast(features):
        w = _cosines(features)
        w = w.masked_fill(torch.eye(w.shape[0], dtype=torch.bool, device=w.device), 0.0)
        scale = w.sum(1).clamp_min(DEGREE_EPS).rsqrt()
        a = scale[:, None] * w * scale[None, :]
        if edge_mask is not None:
            a = a * edge_mask
        if knn_mask is None and k is not None and k < a.shape[0]:
            nearest = a.detach().topk(k, dim=1).indices
            chosen = torch.zeros_like(a).scatter_(1, nearest, 1.0)
            knn_mask = (chosen + chosen.T).clamp(max=1.0)
        if knn_mask is not None:
            a = a * knn_mask
        return (torch.linalg.matrix_power(a, power) if power > 1 else a), knn_mask


def gkd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    edges: Edges = "all",
    k: int | None = None,
    power: int = 1,
) -> torch.Tensor:
    """Graph-based geometric KD of one layer (Lassance et al., ICASSP 2020, code ``do_gkd``).

    ``L = Σ_{i,j} (A_t^p[i,j] − A_s^p[i,j])²`` with the graphs of :func:`gkd_graph`; the k-NN mask is built on
    the teacher's graph and reused for the student; ``labels`` ``[B]`` are needed for ``edges`` intra/inter.
    A **sum** over the B² entries, not a mean. The degrees grow with B, so the entries of A are O(1/B) and the
    sum stays of order 1 when B changes (a mean would shrink as 1/B²); its value still depends on B, and
    λ = 25 was tuned at B = 128.
    """
    mask = None
    if edges != "all":
        if labels is None:
            raise ValueError(f"edges={edges!r} needs the labels")
        mask = class_edges(labels, edges)
    a_t, knn = gkd_graph(teacher.detach(), edge_mask=mask, k=k, power=power)
    a_s, _ = gkd_graph(student, edge_mask=mask, knn_mask=knn, power=power)
    return (a_t - a_s).square().sum()
