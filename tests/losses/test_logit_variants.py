"""The gnosis logit variants, DKD and DIST as pure functions: minima, decompositions, invariances, gradients."""

import pytest
import torch
import torch.nn.functional as F

from kdlab.losses.decoupled import dist, dkd, dkd_parts, inter_class_relation, intra_class_relation, pearson
from kdlab.losses.logits import (
    anneal_kd,
    brier,
    ensemble_logits,
    hard_kd,
    kd,
    kl_divergence,
    reverse_kd,
    symmetric_kl,
    teacher_labels,
)


def logits(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


def entropy(z: torch.Tensor, tau: float) -> torch.Tensor:
    q = F.softmax(z / tau, -1)
    return -(q * q.log()).sum(-1).mean()


TARGET = torch.tensor([0, 3, 1, 4, 2, 2])


def some_target(student: torch.Tensor) -> torch.Tensor:
    """A per-row target class that is not the student's argmax (so TCKD and NCKD both matter)."""
    return (student.argmax(-1) + 1) % student.shape[-1]


# every loss as f(student, teacher, temperature) for the shared checks
LOSSES = {
    "reverse_kd": lambda s, t, tau: reverse_kd(s, t, tau),
    "symmetric_kl": lambda s, t, tau: symmetric_kl(s, t, tau),
    "brier": lambda s, t, tau: brier(s, t, tau),
    "hard_kd": lambda s, t, tau: hard_kd(s, t, tau),
    "anneal_kd": lambda s, t, tau: anneal_kd(s, t, 0.3, tau),
    "dkd": lambda s, t, tau: dkd(s, t, some_target(s), 1.0, 8.0, tau),
    "dist": lambda s, t, tau: dist(s, t, 1.0, 1.0, tau),
}
PER_EXAMPLE_TAU = ["reverse_kd", "symmetric_kl", "brier", "hard_kd", "anneal_kd", "dkd"]


@pytest.mark.parametrize("name", ["symmetric_kl", "brier", "dkd", "dist"])
def test_zero_when_the_student_equals_the_teacher_and_positive_otherwise(name):
    z = logits(6, 5)
    # DIST's Pearson has the official ε = 1e-8 in its denominator, so its minimum is ε-close to 0
    at_teacher = LOSSES[name](z, z, 2.0).item()
    assert abs(at_teacher) < (1e-4 if name == "dist" else 1e-9)
    assert LOSSES[name](logits(6, 5, seed=1), z, 2.0).item() > 1e-3
    for seed in range(3):
        assert LOSSES[name](z + 0.05 * logits(6, 5, seed=20 + seed), z, 2.0).item() > at_teacher


def test_reverse_cross_entropy_is_not_minimal_at_the_teacher_but_at_its_mode():
    # −Σ p log q = KL(p‖q) + H(p): at p = q it is τ²·H(q); its infimum is −τ² log max q (all mass on the mode)
    tau, z = 2.0, logits(6, 5)
    assert reverse_kd(z, z, tau).item() == pytest.approx(tau**2 * entropy(z, tau).item(), rel=1e-9)
    mode = F.one_hot(z.argmax(-1), 5).double() * 200.0
    floor = -(tau**2) * F.log_softmax(z / tau, -1).max(-1).values.mean()
    assert reverse_kd(mode, z, tau).item() == pytest.approx(floor.item(), rel=1e-9)
    assert reverse_kd(mode, z, tau).item() < reverse_kd(z, z, tau).item()


def test_hard_kd_is_minimised_by_all_mass_on_the_teacher_argmax():
    tau, z = 4.0, logits(6, 5)
    onehot = F.one_hot(z.argmax(-1), 5).double()
    values = [hard_kd(margin * onehot, z, tau).item() for margin in (10.0, 20.0, 40.0, 80.0)]
    assert values == sorted(values, reverse=True) and 0.0 < values[-1] < 1e-6  # → 0 as the mass goes to ŷ
    best = hard_kd(40.0 * onehot, z, tau).item()
    for seed in range(5):
        noise = logits(6, 5, seed=10 + seed).abs()
        assert hard_kd(40.0 * onehot - noise * onehot, z, tau).item() > best  # less mass on ŷ
        assert hard_kd(40.0 * onehot + noise * (1 - onehot), z, tau).item() > best  # mass moved elsewhere
        assert hard_kd(logits(6, 5, seed=30 + seed), z, tau).item() > best
    assert hard_kd(z, z, tau).item() > 0.1  # copying the teacher's soft distribution is not the optimum


def test_sampled_teacher_labels_follow_the_tempered_teacher_and_replay_with_the_global_seed():
    tau, z = 2.0, logits(1, 4, seed=3).expand(40000, 4)
    torch.manual_seed(7)
    labels = teacher_labels(z, tau, "sample")
    frequencies = torch.bincount(labels, minlength=4).double() / labels.numel()
    assert torch.allclose(frequencies, F.softmax(z[0] / tau, -1), atol=0.01)
    torch.manual_seed(7)
    assert torch.equal(teacher_labels(z, tau, "sample"), labels)
    assert torch.equal(teacher_labels(z, tau, "argmax"), z.argmax(-1))


def test_anneal_kd_interpolates_hard_labels_and_kd():
    s, t = logits(6, 5, seed=1), logits(6, 5)
    assert anneal_kd(s, t, 1.0, 3.0).item() == pytest.approx(hard_kd(s, t, 3.0, "argmax").item(), rel=1e-12)
    assert anneal_kd(s, t, 0.0, 3.0).item() == pytest.approx(kd(s, t, 3.0).item(), rel=1e-12)
    mid = 0.25 * hard_kd(s, t, 3.0) + 0.75 * kd(s, t, 3.0)
    assert anneal_kd(s, t, 0.25, 3.0).item() == pytest.approx(mid.item(), rel=1e-12)


def test_symmetric_kl_is_the_sum_of_both_kl_directions():
    s, t, tau = logits(6, 5, seed=1), logits(6, 5), 2.0
    both = kl_divergence(s, t, tau) + kl_divergence(t, s, tau)
    assert symmetric_kl(s, t, tau).item() == pytest.approx(both.item(), rel=1e-10)


def test_brier_averages_over_classes_and_examples():
    s, t = logits(6, 5, seed=1), logits(6, 5)
    expected = ((F.softmax(s / 2, -1) - F.softmax(t / 2, -1)) ** 2).sum() / 30
    assert brier(s, t, 2.0).item() == pytest.approx(expected.item(), rel=1e-12)


def test_dkd_pieces_decompose_the_kl_divergence_exactly():
    # Zhao et al. Eq. 1–3: KL(p_t‖p_s) = KL(b_t‖b_s) + (1 − p_t[gt]) · KL(p̂_t‖p̂_s), per example
    s, t, tau = logits(6, 5, seed=1), logits(6, 5), 3.0
    tckd, nckd = dkd_parts(s, t, TARGET, tau)
    q, p = F.softmax(t / tau, -1), F.softmax(s / tau, -1)
    kl = (q * (q.log() - p.log())).sum(-1)
    q_gt = q.gather(1, TARGET[:, None]).squeeze(1)
    assert torch.allclose(tckd + (1 - q_gt) * nckd, kl, atol=1e-6, rtol=0)
    # NCKD by brute force for one example: renormalise the non-target probabilities
    keep = torch.arange(5) != TARGET[1]
    qh, ph = q[1, keep] / q[1, keep].sum(), p[1, keep] / p[1, keep].sum()
    assert nckd[1].item() == pytest.approx((qh * (qh / ph).log()).sum().item(), rel=1e-10)
    expected = tau**2 * (1.0 * tckd + 8.0 * nckd).mean()
    assert dkd(s, t, TARGET, 1.0, 8.0, tau).item() == pytest.approx(expected.item(), rel=1e-12)


def test_pearson_relations_are_invariant_to_affine_maps_of_one_argument():
    p_s, p_t = F.softmax(logits(6, 5, seed=1), -1), F.softmax(logits(6, 5), -1)
    for a, b in [(3.0, 0.5), (0.2, -1.0), (7.0, 0.0)]:
        assert inter_class_relation(a * p_s + b, p_t).item() == pytest.approx(inter_class_relation(p_s, p_t).item())
        assert intra_class_relation(a * p_s + b, p_t).item() == pytest.approx(intra_class_relation(p_s, p_t).item())
    x, y = logits(3, 8, seed=4), logits(3, 8, seed=5)
    reference = torch.stack([torch.corrcoef(torch.stack([x[i], y[i]]))[0, 1] for i in range(3)])
    assert torch.allclose(pearson(x, y), reference, atol=1e-9)


def test_dist_takes_the_two_relations_at_temperature_squared():
    s, t, tau = logits(6, 5, seed=1), logits(6, 5), 4.0
    p_s, p_t = F.softmax(s / tau, -1), F.softmax(t / tau, -1)
    expected = tau**2 * (2.0 * inter_class_relation(p_s, p_t) + 0.5 * intra_class_relation(p_s, p_t))
    assert dist(s, t, 2.0, 0.5, tau).item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradcheck_in_float64(name):
    t = logits(4, 5)
    s = logits(4, 5, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: LOSSES[name](x, t, 2.0), (s,))


@pytest.mark.parametrize("name", PER_EXAMPLE_TAU)
def test_per_example_temperature_equals_each_example_at_its_own_temperature(name):
    s, t = logits(5, 5, seed=1), logits(5, 5)
    tau = torch.tensor([[1.0], [2.0], [4.0], [0.5], [3.0]], dtype=torch.float64)
    batch = LOSSES[name](s, t, tau)
    alone = torch.stack([LOSSES[name](s[i : i + 1], t[i : i + 1], tau[i].item()) for i in range(5)]).mean()
    assert batch.item() == pytest.approx(alone.item(), rel=1e-10)
    x = s.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda v: LOSSES[name](v, t, tau), (x,))


@pytest.mark.parametrize("name", list(LOSSES))
def test_an_ensemble_teacher_is_its_log_mean_softmax(name):
    members, s = logits(6, 3, 5), logits(6, 5, seed=1)
    assert LOSSES[name](s, members, 2.0).item() == pytest.approx(
        LOSSES[name](s, ensemble_logits(members), 2.0).item(), rel=1e-10
    )


@pytest.mark.parametrize("name", list(LOSSES))
def test_half_precision_logits_are_computed_in_float32(name):
    s, t = logits(6, 5, seed=1).half(), logits(6, 5).half()
    assert LOSSES[name](s, t, 2.0).dtype == torch.float32
