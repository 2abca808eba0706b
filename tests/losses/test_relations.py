"""The relational losses (kdlab.losses.relations): their maths, invariances and gradients."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from kdlab.losses.relations import (
    class_edges,
    gkd_graph,
    gkd_loss,
    pkt_loss,
    rkd_angle_loss,
    rkd_distance_loss,
    rkd_loss,
    sp_loss,
    topology_loss,
)

LOSSES = {"sp": sp_loss, "rkd": rkd_loss, "pkt": pkt_loss, "gkd": gkd_loss, "topology": topology_loss}


def features(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Non-negative (post-ReLU-like) features."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def rotation(d: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


# --- GKD ------------------------------------------------------------------------------------------------------------


def test_gkd_graph_by_hand():
    # x1 = (1,0), x2 = (0,1), x3 ∝ (1,1): W has w13 = w23 = 1/√2, w12 = 0; degrees 1/√2, 1/√2, √2;
    # A13 = w13 / √(d1·d3) = 1/√2, A23 likewise, A12 = 0.
    x = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 3.0]], dtype=torch.float64)
    a, mask = gkd_graph(x)
    h = 1 / math.sqrt(2)
    expected = torch.tensor([[0, 0, h], [0, 0, h], [h, h, 0]], dtype=torch.float64)
    torch.testing.assert_close(a, expected)
    assert mask is None


def test_gkd_graph_is_symmetric_non_negative_with_zero_diagonal_and_degree_normalised():
    x = features(10, 3, 4, 4)
    a, _ = gkd_graph(x)
    w = F.normalize(x.flatten(1), dim=1) @ F.normalize(x.flatten(1), dim=1).T
    w.fill_diagonal_(0)
    d = w.sum(1)
    torch.testing.assert_close(a, torch.diag(d.rsqrt()) @ w @ torch.diag(d.rsqrt()))
    torch.testing.assert_close(a, a.T)
    assert torch.all(a.diagonal() == 0) and torch.all(a >= 0)
    # the spectrum of D^{-1/2} W D^{-1/2} lies in [−1, 1] and its top eigenvalue is 1 (eigenvector D^{1/2} 1)
    eig = torch.linalg.eigvalsh(a)
    assert eig.abs().max() <= 1 + 1e-9 and math.isclose(eig.max().item(), 1.0, rel_tol=1e-9)


def test_gkd_negative_features_clamp_degrees_instead_of_nan():
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])  # node degrees −1, −1, 0
    a, _ = gkd_graph(x)
    assert torch.isfinite(a).all()
    loss = gkd_loss(x.clone().requires_grad_(), x)
    loss.backward()
    assert torch.isfinite(loss)


def test_gkd_zero_for_teacher_features_up_to_per_example_positive_scale():
    t = features(12, 3, 5, 5)
    s = t * torch.rand(12, 1, 1, 1, dtype=torch.float64).add(0.1)
    assert gkd_loss(s, t).item() == pytest.approx(0.0, abs=1e-20)
    assert gkd_loss(s, t, k=3, power=2).item() == pytest.approx(0.0, abs=1e-20)


def test_gkd_invariant_to_rotation_and_zero_padding_of_the_student():
    t, s = features(9, 16, seed=1), features(9, 6, seed=2)
    base = gkd_loss(s, t)
    assert base > 0
    torch.testing.assert_close(gkd_loss(s @ rotation(6), t), base)
    torch.testing.assert_close(gkd_loss(torch.cat([s, torch.zeros(9, 5, dtype=s.dtype)], 1), t), base)


def test_gkd_knn_mask_comes_from_the_teacher_and_is_reused_for_the_student():
    t, s1, s2 = features(10, 8, seed=3), features(10, 5, seed=4), features(10, 5, seed=5)
    a_t, mask = gkd_graph(t, k=3)
    assert mask is not None
    torch.testing.assert_close(mask, mask.T)
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and torch.all(mask.sum(1) >= 3)
    _, own = gkd_graph(s1, k=3)
    assert not torch.equal(own, mask)  # the student's own k-NN graph differs, so the test can tell them apart
    for s in (s1, s2):
        a_s, reused = gkd_graph(s, knn_mask=mask)
        assert reused is mask  # changing the student does not change the mask
        a_full, _ = gkd_graph(s)
        torch.testing.assert_close(a_s, a_full * mask)
        torch.testing.assert_close(gkd_loss(s, t, k=3), (a_t - a_full * mask).square().sum())


def test_gkd_knn_off_when_k_reaches_the_batch():
    t, s = features(5, 4, seed=6), features(5, 3, seed=7)
    assert gkd_graph(t, k=5)[1] is None and gkd_graph(t, k=50)[1] is None
    torch.testing.assert_close(gkd_loss(s, t, k=5), gkd_loss(s, t))


def test_gkd_intra_and_inter_masks_partition_the_off_diagonal_edges():
    x = features(12, 6, seed=8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1, 3, 3, 2])
    a, _ = gkd_graph(x)
    intra, _ = gkd_graph(x, edge_mask=class_edges(labels, "intra"))
    inter, _ = gkd_graph(x, edge_mask=class_edges(labels, "inter"))
    torch.testing.assert_close(intra + inter, a)
    assert torch.all(intra * inter == 0)
    same = labels[:, None] == labels[None, :]
    assert torch.all(intra[~same] == 0) and torch.all(inter[same] == 0)
    assert class_edges(labels, "all") is None
    # unlabelled examples (−1) belong to neither mask
    labels[0] = -1
    assert class_edges(labels, "intra")[0].sum() == 0 and class_edges(labels, "inter")[:, 0].sum() == 0
    s = features(12, 4, seed=9)
    parts = gkd_loss(s, x, labels, edges="intra") + gkd_loss(s, x, labels, edges="inter")
    assert parts <= gkd_loss(s, x) + 1e-12  # the cross terms of the split are gone, nothing is added
    with pytest.raises(ValueError, match="labels"):
        gkd_loss(s, x, edges="intra")


def test_gkd_power_two_is_the_matrix_square():
    x = features(7, 5, seed=10)
    a, _ = gkd_graph(x)
    a2, _ = gkd_graph(x, power=2)
    torch.testing.assert_close(a2, a @ a)
    t, s = features(7, 5, seed=11), features(7, 3, seed=12)
    at, mask = gkd_graph(t, k=2)
    as_, _ = gkd_graph(s, knn_mask=mask)
    torch.testing.assert_close(gkd_loss(s, t, k=2, power=3), (at @ at @ at - as_ @ as_ @ as_).square().sum())
    with pytest.raises(ValueError):
        gkd_graph(x, power=0)


def test_gkd_and_topology_sum_over_the_batch_pairs():
    """Sum, not mean: two batches with disjoint supports (block-diagonal graphs) add their losses."""
    t1, s1, t2, s2 = (features(6, 4, seed=i) for i in range(13, 17))
    pad = torch.zeros(6, 4, dtype=torch.float64)
    t = torch.cat([torch.cat([t1, pad], 1), torch.cat([pad, t2], 1)])
    s = torch.cat([torch.cat([s1, pad], 1), torch.cat([pad, s2], 1)])
    torch.testing.assert_close(gkd_loss(s, t), gkd_loss(s1, t1) + gkd_loss(s2, t2))
    torch.testing.assert_close(topology_loss(s, t), topology_loss(s1, t1) + topology_loss(s2, t2))
    # the same examples twice: every cosine pair appears 4 times
    torch.testing.assert_close(topology_loss(torch.cat([s1, s1]), torch.cat([t1, t1])), 4 * topology_loss(s1, t1))


def test_batch_size_scaling_of_the_sums():
    """Topology sums B² cosine gaps: it grows as B². GKD sums B² entries of a degree-normalised graph,
    each O(1/B): it stays O(1) in B (a mean would fall as 1/B²), though it is not batch-size free."""
    g = torch.Generator().manual_seed(40)
    w_t, w_s = torch.randn(16, 32, generator=g), torch.randn(16, 8, generator=g)

    def losses(b):
        x = torch.randn(b, 16, generator=g)
        t, s = torch.relu(x @ w_t), torch.relu(x @ w_s)
        return gkd_loss(s, t).item(), topology_loss(s, t).item()

    (gkd_small, top_small), (gkd_large, top_large) = losses(32), losses(256)
    assert 0.5 < gkd_large / gkd_small < 2
    assert 64 / 2 < top_large / top_small < 64 * 2


# --- RKD, SP, PKT, topology ------------------------------------------------------------------------------------------


def test_rkd_matches_a_direct_computation():
    t, s = features(5, 6, seed=20), features(5, 3, seed=21)

    def psi(x):
        d = torch.cdist(x, x)
        off = ~torch.eye(5, dtype=torch.bool)
        return d[off] / d[off].mean()

    def angles(x):
        out = torch.zeros(5, 5, 5, dtype=x.dtype)
        for i, j, k in itertools.product(range(5), repeat=3):
            if i not in (j, k):
                out[i, j, k] = F.cosine_similarity(x[j] - x[i], x[k] - x[i], dim=0)
        return out

    torch.testing.assert_close(rkd_distance_loss(s, t), F.smooth_l1_loss(psi(s), psi(t)))
    torch.testing.assert_close(rkd_angle_loss(s, t), F.smooth_l1_loss(angles(s), angles(t)))
    torch.testing.assert_close(rkd_loss(s, t), 25 * rkd_distance_loss(s, t) + 50 * rkd_angle_loss(s, t))


def test_rkd_zero_for_identical_and_invariant_to_a_global_scale_of_either_embedding():
    t, s = features(8, 10, seed=22), features(8, 4, seed=23)
    assert rkd_loss(t, t).item() == pytest.approx(0.0, abs=1e-12)
    base = rkd_loss(s, t)
    assert base > 0
    for scale_s, scale_t in ((7.0, 1.0), (1.0, 0.01), (0.3, 40.0)):
        torch.testing.assert_close(rkd_loss(scale_s * s, scale_t * t), base)
    torch.testing.assert_close(rkd_loss(s @ rotation(4), t), base)


def test_sp_formula_and_true_invariances():
    t, s = features(8, 3, 4, 4, seed=24), features(8, 2, 5, 5, seed=25)
    g = [F.normalize(x.flatten(1) @ x.flatten(1).T, dim=1) for x in (s, t)]
    torch.testing.assert_close(sp_loss(s, t), ((g[0] - g[1]) ** 2).sum() / 64)
    assert sp_loss(t, t).item() == pytest.approx(0.0, abs=1e-12)
    base = sp_loss(s, t)
    torch.testing.assert_close(sp_loss(5.0 * s, 0.2 * t), base)  # global scale of either side
    flat = s.flatten(1)
    torch.testing.assert_close(sp_loss(flat @ rotation(50), t), base)  # rotation of the student space
    torch.testing.assert_close(sp_loss(torch.cat([flat, torch.zeros(8, 3, dtype=flat.dtype)], 1), t), base)
    # row normalisation removes each row's own scale, not the column scales: no per-example invariance
    per_example = torch.linspace(0.5, 3.0, 8, dtype=torch.float64)[:, None, None, None]
    assert not torch.allclose(sp_loss(per_example * s, t), base)
    assert sp_loss(per_example * t, t) > 1e-4


def test_pkt_minimum_zero_at_identical_embeddings_and_positive_otherwise():
    t, s = features(8, 10, seed=26), features(8, 4, seed=27)
    assert pkt_loss(t, t).item() == pytest.approx(0.0, abs=1e-15)
    assert pkt_loss(s, t) > 0
    torch.testing.assert_close(pkt_loss(3.0 * t * torch.rand(8, 1, dtype=t.dtype).add(0.5), t), pkt_loss(t, t))
    # the mean over the B² entries of p_t log(p_t / p_s), as RepDistiller
    k = [(F.normalize(x, dim=1) @ F.normalize(x, dim=1).T + 1) / 2 for x in (s, t)]
    p = [m / m.sum(1, keepdim=True) for m in k]
    torch.testing.assert_close(pkt_loss(s, t), (p[1] * (p[1] / p[0]).log()).mean(), rtol=1e-5, atol=1e-8)


def test_topology_zero_for_identical_and_invariant_to_per_example_scale_and_rotation():
    t, s = features(9, 7, seed=28), features(9, 5, seed=29)
    assert topology_loss(t, t).item() == pytest.approx(0.0, abs=1e-20)
    scaled = t * torch.rand(9, 1, dtype=t.dtype).add(0.1)
    assert topology_loss(scaled @ rotation(7), t).item() == pytest.approx(0.0, abs=1e-20)
    base = topology_loss(s, t)
    torch.testing.assert_close(topology_loss(s @ rotation(5) * 4.0, t * torch.arange(1.0, 10.0)[:, None]), base)
    cos = [F.normalize(x, dim=1) @ F.normalize(x, dim=1).T for x in (s, t)]
    torch.testing.assert_close(base, ((cos[1] - cos[0]) ** 2).sum())


# --- all losses: gradients, teacher, precision ----------------------------------------------------------------------


@pytest.mark.parametrize("name", LOSSES)
def test_gradcheck_float64(name):
    t = features(5, 2, 3, 3, seed=30)
    s = features(5, 2, 2, 2, seed=31).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: LOSSES[name](x, t), (s,))


def test_gradcheck_gkd_options():
    t, labels = features(6, 5, seed=32), torch.tensor([0, 1, 0, 1, 2, 0])
    s = features(6, 3, seed=33).requires_grad_()
    for options in ({"edges": "intra"}, {"edges": "inter", "power": 2}, {"k": 2, "power": 3}):
        assert torch.autograd.gradcheck(lambda x, o=options: gkd_loss(x, t, labels, **o), (s,))


@pytest.mark.parametrize("name", LOSSES)
def test_teacher_gets_no_gradient_and_half_inputs_give_float32(name):
    t = features(6, 8, seed=34, dtype=torch.float32).requires_grad_()
    s = features(6, 4, seed=35, dtype=torch.float32).requires_grad_()
    LOSSES[name](s, t).backward()
    assert t.grad is None and s.grad is not None and torch.isfinite(s.grad).all()
    loss = LOSSES[name](s.detach().bfloat16(), t.detach().bfloat16())
    assert loss.dtype == torch.float32
    # autocast would run the Gram matrices in bf16; the losses switch it off
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = LOSSES[name](s.detach(), t.detach())
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, LOSSES[name](s.detach(), t.detach()))


@pytest.mark.parametrize("name", LOSSES)
def test_a_batch_of_one_example_has_no_relations_to_match(name):
    s = features(1, 4, seed=36, dtype=torch.float32).requires_grad_()
    loss = LOSSES[name](s, features(1, 6, seed=37, dtype=torch.float32))
    assert loss.item() == pytest.approx(0.0, abs=1e-10)
    loss.backward()
    assert torch.isfinite(s.grad).all()


@pytest.mark.parametrize("name", LOSSES)
def test_a_few_steps_of_the_loss_alone_reduce_it(name):
    torch.manual_seed(0)
    x = torch.randn(16, 12)
    t = torch.relu(x @ torch.randn(12, 20))
    student = torch.nn.Sequential(torch.nn.Linear(12, 6), torch.nn.ReLU())
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = LOSSES[name](student(x), t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
