"""Dependency-tree inference: head selection, the matrix-tree theorem, and MST / projective decoding.

Conventions (all functions): ``arc_scores`` ``[B, n, n+1]``, entry ``[b, m-1, h]`` the score of head ``h`` for
dependent word ``m`` (words ``1..n``; head ``0`` is ROOT, heads ``1..n`` are words); ``mask`` ``[B, n]`` bool, a
prefix mask (sentence ``b`` has ``length_b = mask[b].sum()`` words). Word ``m`` may take any head
``h ∈ {0..length_b}, h ≠ m``. A tree's score is the sum of its arc scores,

    Score(y) = Σ_m s(y_m → m),   P(y) = exp(Score(y)) / Z,   log Z = LSE_{y ∈ trees} Score(y).

Single-root trees (exactly one word attaches to ROOT, as in treebanks) and multi-root ones (ROOT is an ordinary
extra node) are both available. Padded rows and columns never reach a result (NaN there is harmless), and outputs
at padded positions are 0 (probabilities, heads).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import torch

__all__ = [
    "chu_liu_edmonds",
    "decode_eisner",
    "decode_mst",
    "eisner",
    "enumerate_trees",
    "head_selection_log_marginals",
    "matrix_tree_log_partition",
    "matrix_tree_marginals",
    "tree_score",
    "valid_heads",
]


def valid_heads(mask: torch.Tensor) -> torch.Tensor:
    """The allowed (dependent, head) pairs ``[B, n, n+1]``: word ``m ≤ length`` takes head ``h ≤ length, h ≠ m``."""
    batch, n = mask.shape
    head_exists = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=mask.device), mask.bool()], dim=1)
    heads = torch.arange(n + 1, device=mask.device)
    words = torch.arange(1, n + 1, device=mask.device)
    not_self = heads[None, :] != words[:, None]
    return mask.bool()[:, :, None] & head_exists[:, None, :] & not_self[None]


def head_selection_log_marginals(
    arc_scores: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Locally normalised head distributions ``log P(h | m) = log_softmax_h(s(h → m) / τ)`` ``[B, n, n+1]``.

    The factorised "marginals" of head-selection parsers (Zhang et al. 2017) that DepKD distils. Invalid heads and
    padded words hold the most negative finite value of the dtype, not −inf: ``exp`` gives exactly 0 there and a
    soft cross-entropy ``Σ p·log q`` stays 0 instead of ``0·(−inf) = NaN``.
    """
    valid = valid_heads(mask)
    lowest = torch.finfo(arc_scores.dtype).min
    log_probs = (arc_scores / temperature).masked_fill(~valid, lowest).log_softmax(dim=-1)
    return log_probs.masked_fill(~valid, lowest)


def matrix_tree_log_partition(
    arc_scores: torch.Tensor, mask: torch.Tensor, *, single_root: bool = True
) -> torch.Tensor:
    """``log Z`` ``[B]`` over all non-projective trees, by the matrix-tree theorem (differentiable).

    Koo et al. 2007; Smith & Smith 2007; McDonald & Satta 2007. With weights ``A[h, m] = exp(s(h → m) − c_m)`` the
    Laplacian over words is ``L[h, m] = −A[h, m]`` (``h ≠ m``), ``L[m, m] = Σ_{h'} A[h', m]``. Multi-root: the
    diagonal also counts ROOT and ``Z = det L``. Single-root (Koo et al.): the diagonal counts words only and the
    first row is replaced by the root weights ``A[0, m]``, so ``Z = det L̂``. Every tree gives each word exactly one
    head, so subtracting a per-word shift ``c_m`` (its best valid score) scales every tree by ``exp(−Σ c_m)``:
    ``log Z = log det + Σ c_m``, and every column keeps an entry of 1, which keeps scores of ±100s finite. Padded
    words get an identity block, so sentences of different lengths share one batched ``slogdet`` (in float64).
    """
    valid = valid_heads(mask)
    scores = arc_scores.to(torch.float64)
    # A constant shift changes nothing mathematically, so it needs no gradient path.
    shift = scores.detach().masked_fill(~valid, -torch.inf).amax(dim=-1, keepdim=True)
    shift = torch.where(mask[:, :, None].bool(), shift, 0.0)
    # Mask before exp: exp of a padded +inf/NaN would poison the backward pass even behind a where.
    weights = torch.exp(torch.where(valid, scores - shift, -torch.inf))  # [B, m, h]
    root = weights[:, :, 0]
    arcs = weights[:, :, 1:].transpose(1, 2)  # [B, h, m]
    incoming = arcs.sum(dim=1) if single_root else arcs.sum(dim=1) + root
    laplacian = torch.diag_embed(incoming) - arcs
    if single_root:
        laplacian = torch.cat([root[:, None, :], laplacian[:, 1:]], dim=1)
    laplacian = laplacian + torch.diag_embed((~mask.bool()).to(laplacian.dtype))
    _, log_determinant = torch.linalg.slogdet(laplacian)
    return (log_determinant + shift.squeeze(-1).sum(dim=-1)).to(arc_scores.dtype)


def matrix_tree_marginals(arc_scores: torch.Tensor, mask: torch.Tensor, *, single_root: bool = True) -> torch.Tensor:
    """Arc marginals ``P(h → m) = ∂ log Z / ∂ s(h → m)`` ``[B, n, n+1]`` (Koo et al. 2007), not differentiable.

    Rows of real words sum to 1; invalid heads and padded words are exactly 0 (the scores never reach log Z there).
    """
    with torch.enable_grad():
        scores = arc_scores.detach().requires_grad_(True)
        log_partition = matrix_tree_log_partition(scores, mask, single_root=single_root)
        (marginals,) = torch.autograd.grad(log_partition.sum(), scores)
    return marginals


def tree_score(arc_scores: torch.Tensor | np.ndarray, heads: Sequence[int] | np.ndarray) -> float:
    """``Σ_m s(heads[m] → m)`` for one sentence: ``arc_scores`` ``[n, n+1]`` (or wider), ``heads`` ``[n]``."""
    scores = arc_scores.detach().cpu().double().numpy() if isinstance(arc_scores, torch.Tensor) else arc_scores
    heads = np.asarray(heads, dtype=np.int64)
    return float(np.asarray(scores, dtype=np.float64)[np.arange(len(heads)), heads].sum())


def enumerate_trees(n: int, *, single_root: bool = True, projective: bool = False) -> list[tuple[int, ...]]:
    """Every head vector ``(y_1..y_n)`` that is a tree rooted at 0, by brute force over ``(n+1)^n`` candidates.

    A test and documentation utility. Counts: single-root ``n^{n−1}`` (rooted labelled trees on the words),
    multi-root ``(n+1)^{n−1}`` (Cayley); projective single-root 1, 2, 7, 30, 143, multi-root 1, 3, 12, 55, 273.
    Projective: every word between a head and its dependent descends from that head (ROOT sits left of word 1).
    """
    trees = []
    for heads in itertools.product(range(n + 1), repeat=n):
        parent = (0, *heads)  # parent[m] for node m, ROOT's own entry unused
        if any(parent[m] == m for m in range(1, n + 1)):
            continue
        if single_root and sum(h == 0 for h in heads) != 1:
            continue
        if not all(_reaches_root(parent, m) for m in range(1, n + 1)):
            continue
        if projective and not _is_projective(parent):
            continue
        trees.append(heads)
    return trees


def _reaches_root(parent: tuple[int, ...], node: int) -> bool:
    # A path longer than the number of words must have gone round a cycle.
    for _ in range(len(parent)):
        if node == 0:
            return True
        node = parent[node]
    return node == 0


def _dominates(parent: tuple[int, ...], ancestor: int, node: int) -> bool:
    while node != 0 and node != ancestor:
        node = parent[node]
    return node == ancestor


def _is_projective(parent: tuple[int, ...]) -> bool:
    for m in range(1, len(parent)):
        h = parent[m]
        if not all(_dominates(parent, h, k) for k in range(min(h, m) + 1, max(h, m))):
            return False
    return True


def chu_liu_edmonds(scores: torch.Tensor | np.ndarray, *, single_root: bool = True) -> np.ndarray:
    """Heads ``[n]`` (0 = ROOT) of the maximum spanning arborescence of one sentence's ``scores`` ``[n, n+1]``.

    Chu & Liu 1965; Edmonds 1967 (McDonald et al. 2005 for parsing): take every word's best head, contract a cycle
    into one node whose entering arcs are rescored ``s(u → v) − s(head(v) → v)``, recurse, expand; O(n³) here.
    Single root (Zmigrod et al. 2020, "Please Mind the Root"): every ROOT arc pays a penalty larger than any
    difference of tree scores, ``M = 1 + 2n·(max − min)``; every tree needs ≥ 1 ROOT arc, so the best penalised
    tree has exactly one, and among those the best score — one exact run instead of one per root child.
    """
    matrix = scores.detach().cpu().double().numpy() if isinstance(scores, torch.Tensor) else scores
    matrix = np.asarray(matrix, dtype=np.float64)
    n = matrix.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    weights = np.full((n + 1, n + 1), -np.inf)
    weights[:, 1:] = matrix[:, : n + 1].T  # weights[h, m]
    np.fill_diagonal(weights, -np.inf)
    if single_root:
        finite = weights[np.isfinite(weights)]
        weights[0, 1:] -= 1.0 + 2.0 * n * (finite.max() - finite.min())
    return _max_arborescence(weights)[1:]


def _max_arborescence(weights: np.ndarray) -> np.ndarray:
    """Parents ``[N]`` of the best arborescence rooted at node 0 for ``weights[h, m]`` (−inf: no arc)."""
    heads = weights.argmax(axis=0)
    heads[0] = -1
    cycle = _find_cycle(heads)
    if cycle is None:
        return heads
    in_cycle = np.zeros(len(heads), dtype=bool)
    in_cycle[cycle] = True
    outside = np.flatnonzero(~in_cycle)  # starts with ROOT, which is never on a cycle
    k = len(outside)
    entering = weights[np.ix_(outside, cycle)] - weights[heads[cycle], cycle][None, :]
    entering_target = entering.argmax(axis=1)
    leaving = weights[np.ix_(cycle, outside)]
    leaving_source = leaving.argmax(axis=0)
    contracted = np.full((k + 1, k + 1), -np.inf)
    contracted[:k, :k] = weights[np.ix_(outside, outside)]
    contracted[:k, k] = entering[np.arange(k), entering_target]
    contracted[k, :k] = leaving[leaving_source, np.arange(k)]
    contracted_heads = _max_arborescence(contracted)
    result = heads.copy()  # cycle words keep their cycle heads, except the one the entering arc breaks
    for index in range(1, k):
        head = contracted_heads[index]
        result[outside[index]] = cycle[leaving_source[index]] if head == k else outside[head]
    source = contracted_heads[k]
    result[cycle[entering_target[source]]] = outside[source]
    return result


def _find_cycle(heads: np.ndarray) -> np.ndarray | None:
    state = np.zeros(len(heads), dtype=np.int8)  # 0 unseen, 1 on the current walk, 2 known to reach ROOT
    state[0] = 2
    for start in range(1, len(heads)):
        path = []
        node = start
        while state[node] == 0:
            state[node] = 1
            path.append(node)
            node = heads[node]
        if state[node] == 1:
            return np.array(path[path.index(node) :], dtype=np.int64)
        state[path] = 2
    return None


def eisner(scores: torch.Tensor | np.ndarray) -> np.ndarray:
    """Heads ``[n]`` (0 = ROOT) of the best projective single-root tree for one sentence's ``scores`` ``[n, n+1]``.

    Eisner 1996, O(n³) with the split point vectorised: complete spans ``C→[i, j]`` (head i), ``C←[i, j]``
    (head j) and incomplete ones ``I→``/``I←`` (arc i → j / j → i),
    ``I[i, j] = max_q C→[i, q] + C←[q+1, j] + s``, ``C→[i, j] = max_q I→[i, q] + C→[q, j]``,
    ``C←[i, j] = max_q C←[i, q] + I←[q, j]``. Single root: the tables cover the words only and ROOT takes one
    child r at the end, ``max_r s(0 → r) + C←[1, r] + C→[r, n]``.
    """
    matrix = scores.detach().cpu().double().numpy() if isinstance(scores, torch.Tensor) else scores
    matrix = np.asarray(matrix, dtype=np.float64)
    n = matrix.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    arc = matrix[:, 1 : n + 1].T  # arc[h, m] between words, 0-based
    tables = {kind: np.full((n, n), -np.inf) for kind in ("cr", "cl", "ir", "il")}
    splits = {kind: np.zeros((n, n), dtype=np.int64) for kind in tables}
    np.fill_diagonal(tables["cr"], 0.0)
    np.fill_diagonal(tables["cl"], 0.0)
    for width in range(1, n):
        i = np.arange(n - width)[:, None]
        j = i + width
        offsets = np.arange(width)[None, :]
        rows = np.arange(n - width)
        q = i + offsets  # i..j-1
        joined = tables["cr"][i, q] + tables["cl"][q + 1, j]
        best = joined.argmax(axis=1)
        for kind, arc_score in (("ir", arc[i[:, 0], j[:, 0]]), ("il", arc[j[:, 0], i[:, 0]])):
            tables[kind][i[:, 0], j[:, 0]] = joined[rows, best] + arc_score
            splits[kind][i[:, 0], j[:, 0]] = q[rows, best]
        q_right = q + 1  # i+1..j
        for kind, candidates, split in (
            ("cr", tables["ir"][i, q_right] + tables["cr"][q_right, j], q_right),
            ("cl", tables["cl"][i, q] + tables["il"][q, j], q),
        ):
            best = candidates.argmax(axis=1)
            tables[kind][i[:, 0], j[:, 0]] = candidates[rows, best]
            splits[kind][i[:, 0], j[:, 0]] = split[rows, best]
    root_child = int(np.argmax(matrix[:, 0] + tables["cl"][0, :] + tables["cr"][:, n - 1]))
    heads = np.zeros(n, dtype=np.int64)
    stack = [("cl", 0, root_child), ("cr", root_child, n - 1)]
    while stack:
        kind, start, end = stack.pop()
        if start == end:
            continue
        q = int(splits[kind][start, end])
        if kind == "cr":
            stack += [("ir", start, q), ("cr", q, end)]
        elif kind == "cl":
            stack += [("cl", start, q), ("il", q, end)]
        else:
            if kind == "ir":
                heads[end] = start + 1
            else:
                heads[start] = end + 1
            stack += [("cr", start, q), ("cl", q + 1, end)]
    return heads


def _decode_batch(
    arc_scores: torch.Tensor, mask: torch.Tensor, decode: Callable[[np.ndarray], np.ndarray]
) -> torch.Tensor:
    scores = arc_scores.detach().cpu().double().numpy()
    lengths = mask.sum(dim=1).tolist()
    heads = torch.zeros(mask.shape, dtype=torch.long)
    for b, length in enumerate(lengths):
        heads[b, :length] = torch.from_numpy(decode(scores[b, :length, : length + 1]))
    return heads.to(arc_scores.device)


def decode_mst(arc_scores: torch.Tensor, mask: torch.Tensor, *, single_root: bool = True) -> torch.Tensor:
    """Best non-projective tree per sentence by Chu–Liu–Edmonds: heads ``[B, n]`` (0 = ROOT, 0 at padding)."""
    return _decode_batch(arc_scores, mask, lambda scores: chu_liu_edmonds(scores, single_root=single_root))


def decode_eisner(arc_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Best projective single-root tree per sentence by Eisner's algorithm: heads ``[B, n]`` (0 at padding)."""
    return _decode_batch(arc_scores, mask, eisner)
