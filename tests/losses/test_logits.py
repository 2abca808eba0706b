import math

import pytest
import torch
import torch.nn.functional as F

from kdlab.losses import ensemble_logits, kd, kl_divergence, label_cross_entropy, soft_cross_entropy


def logits(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


def test_kl_of_identical_distributions_is_zero_and_positive_otherwise():
    z = logits(8, 5)
    assert kl_divergence(z, z).abs().item() < 1e-6
    assert kl_divergence(logits(8, 5, seed=1), z).item() > 0.01


def test_kd_equals_tau_squared_times_teacher_entropy_at_the_optimum():
    z = logits(6, 4)
    tau = 3.0
    q = F.softmax(z / tau, -1)
    entropy = -(q * q.log()).sum(-1).mean()
    assert kd(z, z, tau).item() == pytest.approx(tau**2 * entropy.item(), rel=1e-5)


def test_soft_cross_entropy_gradient_equals_kl_gradient_at_tau_one():
    teacher = logits(7, 6, seed=1)
    a = logits(7, 6, seed=2).requires_grad_()
    b = a.detach().clone().requires_grad_()
    (g_ce,) = torch.autograd.grad(kd(a, teacher, 1.0), a)
    (g_kl,) = torch.autograd.grad(kl_divergence(b, teacher, 1.0), b)
    assert torch.allclose(g_ce, g_kl, atol=1e-6)


@pytest.mark.parametrize("tau", [1.0, 2.0, 4.0, 8.0])
def test_kd_gradient_is_tau_times_probability_gap(tau):
    # d/dz_s [τ² · CE(σ(z_t/τ), σ(z_s/τ))] = τ (σ(z_s/τ) − σ(z_t/τ)), averaged over the batch
    teacher, student = logits(5, 4, seed=3), logits(5, 4, seed=4).requires_grad_()
    (grad,) = torch.autograd.grad(kd(student, teacher, tau), student)
    expected = tau * (F.softmax(student / tau, -1) - F.softmax(teacher / tau, -1)) / 5
    assert torch.allclose(grad, expected.detach(), atol=1e-6)


def test_kd_tends_to_logit_matching_at_high_temperature():
    # zero-mean logits per example: τ(σ(z_s/τ) − σ(z_t/τ)) → (z_s − z_t)/c as τ → ∞ (Hinton §2.1)
    c = 6
    teacher = logits(4, c, seed=5)
    teacher = teacher - teacher.mean(-1, keepdim=True)
    student = logits(4, c, seed=6)
    student = (student - student.mean(-1, keepdim=True)).requires_grad_()
    limit = (student - teacher).detach() / c / 4

    def error(tau: float) -> float:
        (grad,) = torch.autograd.grad(kd(student, teacher, tau), student)
        return ((grad - limit).abs().max() / limit.abs().max()).item()

    assert error(1e4) < 1e-2
    assert error(1e4) < error(1e2) < error(10.0)  # converges as τ grows
    # while at τ = 1 the gradient is far from logit matching
    (grad1,) = torch.autograd.grad(kd(student, teacher, 1.0), student)
    assert not torch.allclose(grad1, limit, atol=0.1 * limit.abs().max().item())


def test_ensemble_reduction_is_log_of_mean_softmax():
    members = logits(3, 5, 7)  # [B, m, c]
    expected = torch.log(F.softmax(members, -1).mean(1))
    assert torch.allclose(ensemble_logits(members), expected, atol=1e-10)
    assert not torch.allclose(F.log_softmax(members.mean(1), -1), expected, atol=1e-3)  # not mean logits


def test_ensemble_of_one_equals_its_member():
    member = logits(4, 6)
    assert torch.allclose(ensemble_logits(member[:, None]), F.log_softmax(member, -1), atol=1e-10)
    student = logits(4, 6, seed=9)
    assert kd(student, member[:, None], 4.0).item() == pytest.approx(kd(student, member, 4.0).item(), rel=1e-9)


def test_ensemble_temperature_before_and_after_the_mean():
    members, student, tau = logits(3, 4, 5), logits(3, 5, seed=1), 4.0
    after = F.softmax(torch.log(F.softmax(members, -1).mean(1)) / tau, -1)
    before = F.softmax(members / tau, -1).mean(1)
    log_s = F.log_softmax(student / tau, -1)
    assert soft_cross_entropy(student, members, tau).detach() == pytest.approx((-(after * log_s).sum(-1)).tolist())
    got = soft_cross_entropy(student, members, tau, ensemble="before_mean")
    assert got.tolist() == pytest.approx((-(before * log_s).sum(-1)).tolist())
    assert not torch.allclose(after, before, atol=1e-3)


def test_per_example_temperature_matches_scalar_temperatures():
    teacher, student = logits(4, 5), logits(4, 5, seed=1)
    taus = torch.tensor([[1.0], [2.0], [4.0], [8.0]], dtype=torch.float64)
    got = kd(student, teacher, taus)
    expected = sum(
        t**2 * soft_cross_entropy(student[i : i + 1], teacher[i : i + 1], t) for i, t in enumerate([1, 2, 4, 8])
    )
    assert got.item() == pytest.approx(expected.item() / 4, rel=1e-9)


def test_losses_compute_in_float32_under_low_precision_inputs():
    student, teacher = logits(4, 10).bfloat16(), logits(4, 10, seed=1).bfloat16()
    assert kd(student, teacher).dtype == torch.float32
    assert math.isfinite(kd(student * 100, teacher * 100, 1.0).item())


def test_label_cross_entropy_ignores_unlabelled_and_mixes_labels():
    z, y = logits(4, 3).float(), torch.tensor([0, 2, -1, 1])
    assert label_cross_entropy(z, y).item() == pytest.approx(F.cross_entropy(z[[0, 1, 3]], y[[0, 1, 3]]).item())
    y = torch.tensor([0, 2, 1, 1])
    perm = torch.tensor([1, 0, 3, 2])
    mixed = label_cross_entropy(z, y, perm, 0.3)
    assert mixed.item() == pytest.approx(0.3 * F.cross_entropy(z, y).item() + 0.7 * F.cross_entropy(z, y[perm]).item())


def test_hashed_normal_noise_is_standard_normal_fixed_per_index_and_seeded():
    from kdlab.losses import hashed_normal

    z = hashed_normal(torch.arange(20000), 10, seed=0)
    assert abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1) < 0.02
    assert abs(torch.corrcoef(torch.stack([z[:, 0], z[:, 1]]))[0, 1].item()) < 0.03
    assert torch.equal(hashed_normal(torch.tensor([7, 3]), 10, seed=0), z[[7, 3]])
    assert not torch.allclose(hashed_normal(torch.arange(5), 10, seed=1), z[:5])
