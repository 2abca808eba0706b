"""Centred kernel alignment between two representations of the same examples (Kornblith et al. 2019).

Both inputs are ``[n_examples, features]`` matrices whose rows are the same examples. Convolutional
activations ``[n, C, H, W]`` are first reduced to ``[n, C]`` by a spatial mean per channel
(:func:`as_matrix`) — the axes Stanton et al.'s code got wrong (it averaged channels and height and
then treated width positions as examples). Computation is in float64.
"""

from __future__ import annotations

import torch


def as_matrix(features: torch.Tensor) -> torch.Tensor:
    """``[n, C, *spatial]`` → ``[n, C]`` (mean over the spatial axes); ``[n, d]`` passes; float64."""
    if features.dim() < 2:
        raise ValueError(f"CKA needs [n_examples, features], got shape {tuple(features.shape)}")
    x = features.double()
    return x.flatten(2).mean(-1) if x.dim() > 2 else x


def _check(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = as_matrix(x), as_matrix(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA compares the same examples: {x.shape[0]} rows vs {y.shape[0]} rows")
    if x.shape[0] < 2:
        raise ValueError("CKA needs at least 2 examples")
    return x, y


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F)`` after centring each column; in [0, 1], 1 for ``y = x``.

    Invariant to orthogonal maps and isotropic scaling of either side. ``x``: ``[n, p1]``, ``y``:
    ``[n, p2]`` (or conv maps, reduced by :func:`as_matrix`). Returns a 0-dim float64 tensor.
    """
    x, y = _check(x, y)
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    cross = (y.T @ x).pow(2).sum()
    return cross / ((x.T @ x).norm() * (y.T @ y).norm()).clamp_min(1e-300)


def _rbf_gram(x: torch.Tensor, sigma_scale: float) -> torch.Tensor:
    sq = torch.cdist(x, x).pow(2)
    off = sq[~torch.eye(len(x), dtype=torch.bool, device=x.device)]
    bandwidth2 = sigma_scale**2 * off.median().clamp_min(1e-12)  # σ = scale · sqrt(median squared distance)
    return torch.exp(-sq / (2 * bandwidth2))


def _hsic(k: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    n = k.shape[0]
    h = torch.eye(n, dtype=k.dtype, device=k.device) - 1.0 / n
    return ((h @ k @ h) * m).sum()


def rbf_cka(x: torch.Tensor, y: torch.Tensor, sigma_scale: float = 1.0) -> torch.Tensor:
    """CKA with Gaussian kernels: ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``, ``K_ij = exp(−‖x_i − x_j‖² / 2σ²)``
    with σ = ``sigma_scale`` · sqrt(median squared pairwise distance) of each side. ``[n, p]`` inputs,
    O(n²) memory; returns a 0-dim float64 tensor."""
    x, y = _check(x, y)
    k, m = _rbf_gram(x, sigma_scale), _rbf_gram(y, sigma_scale)
    return _hsic(k, m) / (_hsic(k, k) * _hsic(m, m)).sqrt().clamp_min(1e-300)
