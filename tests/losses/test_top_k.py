"""Divergences against a top-k teacher: the k + 1 bins of the bucket mode are exact at k = V, a true divergence at
any k, equal to an explicit per-row computation; renormalise and raw are what their formulas say; −inf is safe."""

import math

import numpy as np
import pytest
import torch

from kdlab.losses import forward_kl, jsd, reverse_kl, skew_kl, tvd
from kdlab.losses.top_k import raw_top_k_kl, top_k_bins

V = 11
DIVERGENCES = {"forward_kl": forward_kl, "reverse_kl": reverse_kl, "jsd": jsd, "tvd": tvd, "skew_kl": skew_kl}


def cached(teacher_logits: torch.Tensor, k: int, temperature: float = 1.0):
    """What the cache stores: top-k log-probabilities of log_softmax(z / τ), their ids, the log of the rest."""
    log_probs = torch.log_softmax(teacher_logits.double() / temperature, -1)
    values, ids = log_probs.topk(k, -1)
    tail = log_probs.scatter(-1, ids, float("-inf")).logsumexp(-1)
    return ids, values.float(), tail.float()


def logits(rows=6, seed=0, scale=2.0):
    return torch.randn(rows, V, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_the_bucket_at_k_equal_to_v_is_the_full_vocabulary_divergence(name, temperature):
    student, teacher = logits(seed=1).requires_grad_(), logits(seed=2)
    ids, values, tail = cached(teacher, V, temperature)
    assert torch.isneginf(tail).all()
    s_bins, t_bins = top_k_bins(student, ids, values, tail, temperature=temperature)
    ones = torch.ones(1, len(student), dtype=torch.bool)
    binned = DIVERGENCES[name](s_bins[None], t_bins[None], ones, temperature=1.0, tau_squared=False)
    exact = DIVERGENCES[name](student[None], teacher[None], ones, temperature=temperature, tau_squared=False)
    assert torch.allclose(binned, exact, atol=1e-5), (binned, exact)
    (g_binned,) = torch.autograd.grad(binned.sum(), student)
    (g_exact,) = torch.autograd.grad(exact.sum(), student)
    assert torch.allclose(g_binned, g_exact, atol=1e-5) and torch.isfinite(g_binned).all()


@pytest.mark.parametrize("k", [1, 3, 7])
def test_the_bucket_is_an_explicit_k_plus_one_bin_kl_and_zero_for_an_equal_student(k):
    student, teacher = logits(seed=3), logits(seed=4)
    ids, values, tail = cached(teacher, k)
    s_bins, t_bins = top_k_bins(student, ids, values, tail)
    got = forward_kl(s_bins[None], t_bins[None], torch.ones(1, len(student), dtype=torch.bool))[0]
    q = torch.softmax(student.double(), -1).numpy()
    p = torch.softmax(teacher.double(), -1).numpy()
    for r in range(len(student)):
        top = ids[r].numpy()
        rest = np.setdiff1d(np.arange(V), top)
        pb = np.append(p[r, top], p[r, rest].sum())
        qb = np.append(q[r, top], q[r, rest].sum())
        assert got[r].item() == pytest.approx(float((pb * np.log(pb / qb)).sum()), abs=1e-5)
    same_bins = top_k_bins(teacher, ids, values, tail)
    assert forward_kl(same_bins[0][None], same_bins[1][None], torch.ones(1, 6, dtype=torch.bool)).abs().max() < 1e-5


def test_renormalise_compares_the_two_distributions_on_the_teachers_k_tokens():
    student, teacher = logits(seed=5), logits(seed=6)
    ids, values, tail = cached(teacher, 4)
    s_bins, t_bins = top_k_bins(student, ids, values, tail, tail="renormalise")
    assert s_bins.shape == (6, 4)
    got = forward_kl(s_bins[None], t_bins[None], torch.ones(1, 6, dtype=torch.bool))[0]
    for r in range(6):
        top = ids[r]
        p = torch.softmax(teacher[r, top].double(), -1)
        q = torch.softmax(student[r, top].double(), -1)
        assert got[r].item() == pytest.approx(float((p * (p / q).log()).sum()), abs=1e-5)


def test_raw_is_distillkits_partial_kl_and_not_a_divergence_below_k_equal_v():
    student, teacher = logits(seed=7), logits(seed=8)
    ids, values, _ = cached(teacher, 3)
    got = raw_top_k_kl(student, ids, values)
    q = torch.log_softmax(student.double(), -1)
    expected = (values.double().exp() * (values.double() - q.gather(-1, ids))).sum(-1)
    assert torch.allclose(got.double(), expected, atol=1e-5)
    assert raw_top_k_kl(teacher, ids, values).abs().max() < 1e-5  # student = teacher: 0, but it is no divergence:
    greedier = teacher.scatter_add(-1, ids, torch.full(ids.shape, 5.0))  # more mass on the teacher's top-k tokens
    assert (raw_top_k_kl(greedier, ids, values) < 0).all()  # below 0 for a student that differs


def test_minus_infinity_in_the_cache_gives_finite_values_and_gradients():
    teacher = logits(seed=9)
    teacher[:, :5] = float("-inf")  # a vocabulary mask: only 6 tokens possible
    ids, values, tail = cached(teacher, 8)  # more slots than possible tokens: two −inf values per row
    assert torch.isneginf(values).any() and torch.isneginf(tail).all()
    student = logits(seed=10).requires_grad_()
    for tail_mode in ("bucket", "renormalise"):
        s_bins, t_bins = top_k_bins(student, ids, values, tail, tail=tail_mode)
        for name in ("forward_kl", "jsd", "tvd", "skew_kl"):
            value = DIVERGENCES[name](s_bins[None], t_bins[None], torch.ones(1, 6, dtype=torch.bool))
            (grad,) = torch.autograd.grad(value.sum(), student, retain_graph=True)
            assert torch.isfinite(value).all() and torch.isfinite(grad).all(), (tail_mode, name)
    raw = raw_top_k_kl(student, ids, values)
    assert torch.isfinite(raw).all() and math.isfinite(torch.autograd.grad(raw.sum(), student)[0].sum().item())
