"""The token-level divergences of causal-LM distillation (kdlab.losses.tokens), checked against the maths."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.losses import (
    IGNORE_INDEX,
    forward_kl,
    jsd,
    next_token_cross_entropy,
    next_token_targets,
    prediction_logits,
    reduce_tokens,
    reverse_kl,
    skew_kl,
    tvd,
)


def logits(*shape: int, seed: int = 0, scale: float = 3.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale).to(dtype)


MASK = torch.tensor([[True, True, False, True], [False, True, True, True]])  # [B=2, T=4]


# --- independent float64 brute force, one token at a time (numpy, explicit 0·log 0 = 0) ----------------------------


def np_softmax(z: np.ndarray, tau: float) -> np.ndarray:
    z = z / tau
    e = np.exp(z - z.max())
    return e / e.sum()


def np_kl(a: np.ndarray, b: np.ndarray) -> float:
    return float(sum(a_v * math.log(a_v / b_v) for a_v, b_v in zip(a, b, strict=True) if a_v > 0))


def np_jsd(p: np.ndarray, q: np.ndarray, beta: float) -> float:
    if beta == 0:
        return np_kl(p, q)
    if beta == 1:
        return np_kl(q, p)
    m = beta * p + (1 - beta) * q
    return beta * np_kl(p, m) + (1 - beta) * np_kl(q, m)


def np_skew(p: np.ndarray, q: np.ndarray, alpha: float) -> float:
    return np_kl(p, alpha * p + (1 - alpha) * q)


# name -> (function, hyper-parameters, brute force f(p, q) with p = teacher, q = student)
DIVERGENCES = {
    "forward_kl": (forward_kl, {}, lambda p, q: np_kl(p, q)),
    "reverse_kl": (reverse_kl, {}, lambda p, q: np_kl(q, p)),
    "jsd_0.5": (jsd, {"beta": 0.5}, lambda p, q: np_jsd(p, q, 0.5)),
    "jsd_0.1": (jsd, {"beta": 0.1}, lambda p, q: np_jsd(p, q, 0.1)),
    "jsd_0.9": (jsd, {"beta": 0.9}, lambda p, q: np_jsd(p, q, 0.9)),
    "tvd": (tvd, {}, lambda p, q: 0.5 * float(np.abs(p - q).sum())),
    "skew_kl_0.1": (skew_kl, {"skew": 0.1}, lambda p, q: np_skew(p, q, 0.1)),
    "skew_kl_0.5": (skew_kl, {"skew": 0.5}, lambda p, q: np_skew(p, q, 0.5)),
}
NAMES = list(DIVERGENCES)
# the divergences that must stay finite when the teacher has −inf logits (reverse KL is genuinely infinite there)
VOCAB_MASK_SAFE = [name for name in NAMES if name != "reverse_kl"] + ["jsd_0", "skew_kl_0", "skew_kl_1"]
EXTRA = {
    "jsd_0": (jsd, {"beta": 0.0}, lambda p, q: np_jsd(p, q, 0.0)),
    "skew_kl_0": (skew_kl, {"skew": 0.0}, lambda p, q: np_skew(p, q, 0.0)),
    "skew_kl_1": (skew_kl, {"skew": 1.0}, lambda p, q: np_skew(p, q, 1.0)),
}
ALL = {**DIVERGENCES, **EXTRA}


def call(name, student, teacher, mask=MASK, **kwargs):
    function, hparams, _ = ALL[name]
    return function(student, teacher, mask, **hparams, **kwargs)


def brute_force(name, student, teacher, mask, tau, tau_sq):
    _, _, formula = ALL[name]
    s, t = student.detach().double().numpy(), teacher.detach().double().numpy()
    out = np.zeros(mask.shape)
    for b in range(mask.shape[0]):
        for i in range(mask.shape[1]):
            if mask[b, i]:
                out[b, i] = formula(np_softmax(t[b, i], tau), np_softmax(s[b, i], tau)) * (tau**2 if tau_sq else 1)
    return torch.from_numpy(out)


# --- causal alignment -------------------------------------------------------------------------------------------


def test_next_token_targets_shift_the_labels_and_take_the_mask_from_the_shifted_labels():
    prompt = 3  # positions < 3 are the prompt; sequence 1 is padded after 5 tokens
    labels = torch.tensor([[11, 12, 13, 14, 15, 16, 17], [21, 22, 23, 24, 25, 0, 0]])
    labels[:, :prompt] = IGNORE_INDEX
    labels[1, 5:] = IGNORE_INDEX
    targets, mask = next_token_targets(labels)
    assert torch.equal(targets, labels[:, 1:])
    assert mask.dtype == torch.bool
    # the logit at P − 1 = 2 predicts the first answer token: the mask starts at P − 1
    expected = torch.tensor([[False, False, True, True, True, True], [False, False, True, True, False, False]])
    assert torch.equal(mask, expected)
    # the unshifted mask (labels[:, :-1]) is the bug this prevents: it starts at P and trains a padded target
    assert not torch.equal(labels[:, :-1] != IGNORE_INDEX, expected)


def test_prediction_logits_drop_the_last_position():
    z = logits(2, 5, 7)
    assert prediction_logits(z).shape == (2, 4, 7)
    assert torch.equal(prediction_logits(z), z[:, :4])


def test_shifted_cross_entropy_of_a_perfect_next_token_model_is_zero_and_the_unshifted_one_is_large():
    # sequence rule x_{t+1} = (x_t + 3) mod V; the toy model puts a logit of 30 on (x_t + 3) mod V at position t
    vocab, length, prompt = 16, 9, 2
    starts = torch.tensor([0, 5, 11])
    tokens = (starts[:, None] + 3 * torch.arange(length)) % vocab
    model_logits = 30.0 * F.one_hot((tokens + 3) % vocab, vocab).double()
    labels = tokens.clone()
    labels[:, :prompt] = IGNORE_INDEX

    targets, mask = next_token_targets(labels)
    shifted = reduce_tokens(next_token_cross_entropy(prediction_logits(model_logits), targets, mask), mask)
    unshifted_mask = labels != IGNORE_INDEX
    unshifted = reduce_tokens(next_token_cross_entropy(model_logits, labels, unshifted_mask), unshifted_mask)
    assert shifted.item() < 1e-6
    assert unshifted.item() == pytest.approx(30.0 + math.log1p((vocab - 1) * math.exp(-30.0)), rel=1e-9)


def test_token_cross_entropy_is_minus_the_log_probability_of_the_target_and_zero_where_masked():
    z = logits(2, 4, 9, seed=3)
    targets = torch.tensor([[1, 8, IGNORE_INDEX, 0], [IGNORE_INDEX, 4, 4, 7]])
    ce = next_token_cross_entropy(z, targets, MASK)
    log_q = torch.log_softmax(z, -1)
    for b in range(2):
        for t in range(4):
            expected = -log_q[b, t, targets[b, t]].item() if MASK[b, t] else 0.0
            assert ce[b, t].item() == pytest.approx(expected, abs=1e-12)
    reference = F.cross_entropy(z.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")
    assert torch.allclose(ce, reference, atol=1e-12)


# --- values: zero at agreement, positivity, bounds, brute force ---------------------------------------------------


@pytest.mark.parametrize("name", NAMES + list(EXTRA))
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_divergence_is_zero_for_identical_logits_and_positive_otherwise(name, tau):
    z = logits(2, 4, 7)
    same = call(name, z, z.clone(), temperature=tau)
    assert same.abs().max().item() < 1e-12
    other = call(name, logits(2, 4, 7, seed=1), z, temperature=tau)
    if name == "skew_kl_1":  # KL(p‖p): identically zero, by definition
        assert other.abs().max().item() < 1e-12
    else:
        assert (other[MASK] > 1e-3).all()
    assert torch.equal(other[~MASK], torch.zeros_like(other[~MASK]))


def test_kls_are_nonnegative_and_tvd_lies_in_the_unit_interval():
    mask = torch.ones(4, 16, dtype=torch.bool)
    for seed, scale in [(0, 0.1), (1, 1.0), (2, 5.0), (3, 20.0)]:
        s, t = logits(4, 16, 64, seed=seed, scale=scale), logits(4, 16, 64, seed=seed + 100, scale=scale)
        for function in (forward_kl, reverse_kl, jsd, skew_kl):
            assert (function(s, t, mask) >= 0).all()
        distance = tvd(s, t, mask)
        assert ((distance >= 0) & (distance <= 1 + 1e-12)).all()  # rounding may add an ulp
    # disjoint supports: TVD reaches 1
    spike = torch.full((1, 1, 8), -1e4, dtype=torch.float64)
    a, b = spike.clone(), spike.clone()
    a[..., 0], b[..., 1] = 0.0, 0.0
    assert tvd(a, b, torch.ones(1, 1, dtype=torch.bool)).item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", NAMES + list(EXTRA))
@pytest.mark.parametrize("tau", [1.0, 2.0])
@pytest.mark.parametrize("tau_sq", [True, False])
def test_divergence_equals_the_per_token_brute_force_formula(name, tau, tau_sq):
    s, t = logits(2, 4, 7, seed=4), logits(2, 4, 7, seed=5)
    value = call(name, s, t, temperature=tau, tau_squared=tau_sq)
    assert value.shape == MASK.shape
    assert torch.allclose(value, brute_force(name, s, t, MASK, tau, tau_sq), rtol=1e-10, atol=1e-12)
    # float32 inputs: float32 outputs, same numbers to float32 precision
    value32 = call(name, s.float(), t.float(), temperature=tau, tau_squared=tau_sq)
    assert value32.dtype == torch.float32
    assert torch.allclose(value32.double(), brute_force(name, s.float(), t.float(), MASK, tau, tau_sq), atol=2e-6)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tau", [0.5, 2.0, 7.0])
def test_tau_squared_multiplies_the_divergence_by_tau_squared(name, tau):
    s, t = logits(2, 4, 7, seed=6), logits(2, 4, 7, seed=7)
    scaled = call(name, s, t, temperature=tau, tau_squared=True)
    plain = call(name, s, t, temperature=tau, tau_squared=False)
    assert torch.allclose(scaled, tau**2 * plain, rtol=1e-14, atol=0)
    assert not torch.allclose(scaled, plain)


def test_tvd_has_no_tau_squared_by_default_and_the_kls_do():
    s, t = logits(2, 4, 7, seed=6), logits(2, 4, 7, seed=7)
    assert torch.equal(tvd(s, t, MASK, temperature=3.0), tvd(s, t, MASK, temperature=3.0, tau_squared=False))
    for function in (forward_kl, reverse_kl, jsd, skew_kl):
        default = function(s, t, MASK, temperature=3.0)
        assert torch.equal(default, function(s, t, MASK, temperature=3.0, tau_squared=True))


def test_nonpositive_temperature_is_rejected():
    z = logits(2, 4, 7)
    with pytest.raises(ValueError, match="temperature"):
        forward_kl(z, z, MASK, temperature=0.0)


# --- JSD: endpoints, the jump, symmetry, bounds --------------------------------------------------------------------


def test_jsd_endpoints_are_forward_and_reverse_kl_exactly():
    s, t = logits(2, 4, 7, seed=8), logits(2, 4, 7, seed=9)
    for tau in (1.0, 2.0):
        assert torch.equal(jsd(s, t, MASK, beta=0.0, temperature=tau), forward_kl(s, t, MASK, temperature=tau))
        assert torch.equal(jsd(s, t, MASK, beta=1.0, temperature=tau), reverse_kl(s, t, MASK, temperature=tau))


def test_jsd_tends_to_zero_next_to_both_endpoints_so_the_endpoints_are_a_jump():
    s, t = logits(2, 4, 7, seed=8), logits(2, 4, 7, seed=9)
    for near, endpoint in [(1e-6, 0.0), (1 - 1e-6, 1.0)]:
        inside = jsd(s, t, MASK, beta=near)
        assert inside.abs().max().item() < 1e-4
        assert (jsd(s, t, MASK, beta=endpoint)[MASK] - inside[MASK] > 0.1).all()


def test_jsd_is_symmetric_at_one_half_and_swaps_beta_in_general():
    s, t = logits(2, 4, 7, seed=10), logits(2, 4, 7, seed=11)
    assert torch.allclose(jsd(s, t, MASK), jsd(t, s, MASK), rtol=1e-12, atol=1e-14)
    for beta in (0.1, 0.3):
        assert torch.allclose(jsd(s, t, MASK, beta=beta), jsd(t, s, MASK, beta=1 - beta), rtol=1e-12, atol=1e-14)
        assert not torch.allclose(jsd(s, t, MASK, beta=beta), jsd(t, s, MASK, beta=beta))


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.8])
def test_jsd_is_bounded_by_the_entropy_of_the_mixing_weights_and_reaches_it_on_disjoint_supports(beta):
    bound = -beta * math.log(beta) - (1 - beta) * math.log(1 - beta)  # ln 2 at β = 0.5
    mask = torch.ones(4, 16, dtype=torch.bool)
    for seed, scale in [(0, 1.0), (1, 10.0), (2, 100.0)]:
        s, t = logits(4, 16, 64, seed=seed, scale=scale), logits(4, 16, 64, seed=seed + 50, scale=scale)
        assert (jsd(s, t, mask, beta=beta, tau_squared=False) <= bound + 1e-12).all()
    a = torch.full((1, 1, 8), -60.0, dtype=torch.float64)
    b = a.clone()
    a[..., 0], b[..., 1] = 60.0, 60.0
    value = jsd(a, b, torch.ones(1, 1, dtype=torch.bool), beta=beta, tau_squared=False).item()
    assert value == pytest.approx(bound, abs=1e-9)


def test_beta_and_skew_outside_the_unit_interval_are_rejected_naming_the_value():
    z = logits(2, 4, 7)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=f"beta.*{bad}"):
            jsd(z, z, MASK, beta=bad)
        with pytest.raises(ValueError, match=f"skew.*{bad}"):
            skew_kl(z, z, MASK, skew=bad)


# --- skew KL ------------------------------------------------------------------------------------------------------


def test_skew_kl_interpolates_from_forward_kl_to_zero():
    s, t = logits(2, 4, 7, seed=12), logits(2, 4, 7, seed=13)
    assert torch.equal(skew_kl(s, t, MASK, skew=0.0, temperature=2.0), forward_kl(s, t, MASK, temperature=2.0))
    # KL(p ‖ p − ε(p − q)) = ε²/2 · χ²(q‖p) + O(ε³): it vanishes quadratically in ε = 1 − α
    p, q = F.softmax(t, -1)[MASK], F.softmax(s, -1)[MASK]
    leading = ((q - p) ** 2 / p).sum(-1) / 2
    for eps in (1e-5, 1e-6):
        near = skew_kl(s, t, MASK, skew=1 - eps)[MASK]
        assert near.max().item() < 1e-6
        assert torch.allclose(near, eps**2 * leading, rtol=0.5 if eps == 1e-5 else 0.1)
    assert torch.equal(skew_kl(s, t, MASK, skew=1.0), torch.zeros(2, 4, dtype=torch.float64))
    # monotone in between: more teacher in the mixture, smaller divergence
    values = [skew_kl(s, t, MASK, skew=alpha)[MASK] for alpha in (0.0, 0.1, 0.5, 0.9)]
    assert all((a > b).all() for a, b in itertools.pairwise(values))


def test_skew_kl_is_bounded_by_log_one_over_skew_even_on_disjoint_supports():
    a = torch.full((1, 1, 8), -60.0, dtype=torch.float64)
    b = a.clone()
    a[..., 0], b[..., 1] = 60.0, 60.0
    mask = torch.ones(1, 1, dtype=torch.bool)
    for alpha in (0.1, 0.3):
        assert forward_kl(a, b, mask).item() > 100  # the unskewed KL blows up
        assert skew_kl(a, b, mask, skew=alpha).item() == pytest.approx(-math.log(alpha), abs=1e-9)


# --- gradients ----------------------------------------------------------------------------------------------------


def test_forward_kl_gradient_at_tau_one_is_q_minus_p_and_equals_the_soft_cross_entropy_gradient():
    teacher = logits(2, 4, 7, seed=14)
    student = logits(2, 4, 7, seed=15).requires_grad_()
    (grad,) = torch.autograd.grad(forward_kl(student, teacher, MASK).sum(), student)
    q, p = F.softmax(student, -1).detach(), F.softmax(teacher, -1)
    expected = torch.where(MASK[..., None], q - p, 0.0)
    assert torch.allclose(grad, expected, atol=1e-12)
    soft_ce = -(p * F.log_softmax(student, -1)).sum(-1)
    (grad_ce,) = torch.autograd.grad(reduce_tokens(soft_ce, MASK), student)
    (grad_kl,) = torch.autograd.grad(reduce_tokens(forward_kl(student, teacher, MASK), MASK), student)
    assert torch.allclose(grad_kl, grad_ce, atol=1e-12)
    # the values differ by the teacher's entropy: the divergence is not the cross-entropy
    entropy = -(p * p.log()).sum(-1)
    assert torch.allclose(soft_ce - forward_kl(student, teacher, MASK), torch.where(MASK, entropy, soft_ce))


@pytest.mark.parametrize("tau", [1.0, 3.0, 10.0])
def test_tau_squared_forward_kl_gradient_is_tau_times_the_probability_gap(tau):
    teacher = logits(2, 4, 7, seed=16)
    student = logits(2, 4, 7, seed=17).requires_grad_()
    (grad,) = torch.autograd.grad(forward_kl(student, teacher, MASK, temperature=tau).sum(), student)
    gap = F.softmax(student / tau, -1).detach() - F.softmax(teacher / tau, -1)
    assert torch.allclose(grad, torch.where(MASK[..., None], tau * gap, 0.0), atol=1e-12)


def test_tau_squared_keeps_the_gradient_scale_independent_of_tau():
    # zero-mean logits: τ (q − p) → (z_s − z_t) / V as τ → ∞ (Hinton et al. 2015, §2.1)
    vocab = 7
    teacher = logits(2, 4, vocab, seed=18)
    teacher = teacher - teacher.mean(-1, keepdim=True)
    student = logits(2, 4, vocab, seed=19)
    student = (student - student.mean(-1, keepdim=True)).requires_grad_()
    limit = torch.where(MASK[..., None], (student - teacher).detach() / vocab, 0.0)

    def grad(tau: float, tau_sq: bool) -> torch.Tensor:
        loss = forward_kl(student, teacher, MASK, temperature=tau, tau_squared=tau_sq).sum()
        return torch.autograd.grad(loss, student)[0]

    for tau in (100.0, 1000.0):
        assert torch.allclose(grad(tau, True), limit, rtol=0, atol=0.05 * limit.abs().max().item())
    # without τ² the gradient shrinks as 1/τ²
    ratio = grad(100.0, False).norm() / grad(1000.0, False).norm()
    assert ratio.item() == pytest.approx(100.0, rel=0.02)


@pytest.mark.parametrize("name", NAMES + list(EXTRA))
def test_autograd_matches_finite_differences(name):
    s = logits(1, 2, 5, seed=20).requires_grad_()
    t = logits(1, 2, 5, seed=21).requires_grad_()
    mask = torch.tensor([[True, True]])
    assert torch.autograd.gradcheck(lambda a, b: call(name, a, b, mask=mask, temperature=1.5), (s, t))


# --- masks: padded positions and vocabulary masks -----------------------------------------------------------------


def with_garbage_at_masked_positions(z: torch.Tensor, seed: int) -> torch.Tensor:
    garbage = logits(*z.shape, seed=seed, scale=1e4)
    return torch.where(MASK[..., None], z, garbage)


@pytest.mark.parametrize("name", [*NAMES, "cross_entropy"])
def test_garbage_at_masked_positions_changes_nothing_at_valid_positions(name):
    s, t = logits(2, 4, 7, seed=22), logits(2, 4, 7, seed=23)
    targets = torch.tensor([[1, 2, IGNORE_INDEX, 3], [IGNORE_INDEX, 4, 5, 6]])

    def run(student, teacher):
        student = student.clone().requires_grad_()
        if name == "cross_entropy":
            per_token = next_token_cross_entropy(student, targets, MASK)
        else:
            per_token = call(name, student, teacher)
        loss = reduce_tokens(per_token, MASK)
        return per_token.detach(), loss.detach(), torch.autograd.grad(loss, student)[0]

    clean = run(s, t)
    dirty = run(with_garbage_at_masked_positions(s, 24), with_garbage_at_masked_positions(t, 25))
    assert torch.equal(clean[0], dirty[0])
    assert torch.equal(dirty[0][~MASK], torch.zeros(int((~MASK).sum()), dtype=torch.float64))
    assert torch.equal(clean[1], dirty[1])
    assert torch.equal(clean[2], dirty[2])
    assert torch.equal(dirty[2][~MASK], torch.zeros_like(dirty[2][~MASK]))


def test_an_infinite_value_at_a_masked_position_does_not_leak():
    # the teacher forbids a token the student likes at a padded position: reverse KL is +inf there; a mask
    # applied by multiplication would turn it into NaN (inf · 0), torch.where keeps the loss finite
    s, t = logits(2, 4, 7, seed=26), logits(2, 4, 7, seed=27)
    t[0, 2, 3] = -math.inf
    per_token = reverse_kl(s, t, MASK)
    assert per_token[0, 2].item() == 0.0
    assert torch.isfinite(reduce_tokens(per_token, MASK))
    nan_per_token = torch.where(MASK, per_token, math.nan)
    assert reduce_tokens(nan_per_token, MASK).item() == reduce_tokens(per_token, MASK).item()


def teacher_with_vocabulary_mask() -> torch.Tensor:
    t = logits(2, 4, 7, seed=28)
    t[..., 5:] = -math.inf  # two tokens the teacher never emits
    t[0, 1, 0] = -math.inf
    return t


@pytest.mark.parametrize("name", VOCAB_MASK_SAFE)
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_minus_infinity_teacher_logits_give_finite_values_and_gradients(name, tau):
    s = logits(2, 4, 7, seed=29).requires_grad_()
    t = teacher_with_vocabulary_mask().requires_grad_()
    value = call(name, s, t, temperature=tau)
    assert torch.isfinite(value).all()
    assert torch.allclose(value, brute_force(name, s, t, MASK, tau, name != "tvd"), rtol=1e-10, atol=1e-12)
    grad_s, grad_t = torch.autograd.grad(reduce_tokens(value, MASK), (s, t), allow_unused=True)
    assert torch.isfinite(grad_t).all()
    if name == "skew_kl_1":  # KL(p‖p) does not depend on the student
        assert grad_s is None
    else:
        assert torch.isfinite(grad_s).all() and grad_s.abs().max().item() > 1e-4


def test_reverse_kl_is_infinite_where_the_teacher_forbids_a_token_the_student_allows():
    s = logits(2, 4, 7, seed=29)
    value = reverse_kl(s, teacher_with_vocabulary_mask(), MASK)
    assert torch.isposinf(value[MASK]).all()


# --- reduction across micro-batches -------------------------------------------------------------------------------

VOCAB = 11


class TinyLM(nn.Module):
    """Embedding → tanh → linear: each position's logits depend on its token (enough for the gradient identity)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, 8).double()
        self.head = nn.Linear(8, VOCAB).double()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.embed(ids)))


TEACHER_TABLE = logits(VOCAB, VOCAB, seed=30)
LENGTHS, PROMPTS = [7, 3, 5, 2, 6], [2, 1, 1, 0, 3]


def sequences() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(31)
    return [torch.randint(VOCAB, (n,), generator=generator) for n in LENGTHS]


def pad(indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad the chosen sequences only to their own longest one: token 0 and IGNORE_INDEX labels."""
    chosen = [sequences()[i] for i in indices]
    width = max(len(x) for x in chosen)
    ids = torch.zeros(len(chosen), width, dtype=torch.long)
    labels = torch.full((len(chosen), width), IGNORE_INDEX)
    for row, (i, x) in enumerate(zip(indices, chosen, strict=True)):
        ids[row, : len(x)] = x
        labels[row, PROMPTS[i] : len(x)] = x[PROMPTS[i] :]
    return ids, labels


def micro_loss(model, ids, labels, num_tokens=None, batchmean=False):
    targets, mask = next_token_targets(labels)
    student = prediction_logits(model(ids))
    teacher = prediction_logits(TEACHER_TABLE[ids])
    per_token = forward_kl(student, teacher, mask, temperature=2.0) + next_token_cross_entropy(student, targets, mask)
    if batchmean:
        return torch.where(mask, per_token, 0.0).sum() / ids.shape[0]
    return reduce_tokens(per_token, mask, num_tokens)


def gradients(model, loss_of_batches):
    model.zero_grad()
    for loss in loss_of_batches():
        loss.backward()
    return torch.cat([p.grad.reshape(-1).clone() for p in model.parameters()])


def test_micro_batches_of_unequal_lengths_sum_to_the_full_batch_gradient():
    model = TinyLM()
    full_ids, full_labels = pad([0, 1, 2, 3, 4])
    halves = [pad([0, 1]), pad([2, 3, 4])]
    assert [ids.shape[1] for ids, _ in halves] == [7, 6]  # each padded to its own longest sequence
    total = int(next_token_targets(full_labels)[1].sum())
    assert total == sum(n - max(p, 1) for n, p in zip(LENGTHS, PROMPTS, strict=True))
    assert sum(int(next_token_targets(labels)[1].sum()) for _, labels in halves) == total

    full = gradients(model, lambda: [micro_loss(model, full_ids, full_labels)])
    accumulated = gradients(model, lambda: [micro_loss(model, i, lab, num_tokens=total) for i, lab in halves])
    as_tensor = gradients(
        model, lambda: [micro_loss(model, i, lab, num_tokens=torch.tensor(total)) for i, lab in halves]
    )
    assert torch.allclose(accumulated, full, rtol=0, atol=1e-6)
    assert torch.allclose(as_tensor, full, rtol=0, atol=1e-12)

    # the bugs this prevents: batchmean (÷ B) and each micro-batch's own token mean, accumulated with ÷ 2
    full_batchmean = gradients(model, lambda: [micro_loss(model, full_ids, full_labels, batchmean=True)])
    batchmean = gradients(model, lambda: [micro_loss(model, i, lab, batchmean=True) / 2 for i, lab in halves])
    own_mean = gradients(model, lambda: [micro_loss(model, i, lab) / 2 for i, lab in halves])
    for wrong in (batchmean, own_mean):
        assert (wrong - full).abs().max().item() > 1e-3
    assert (batchmean - full_batchmean).abs().max().item() > 1e-3


def test_a_fully_masked_micro_batch_gives_zero_with_a_finite_zero_gradient():
    model = TinyLM()
    ids, labels = pad([1, 3])
    labels[:] = IGNORE_INDEX
    for num_tokens in (None, 0, torch.tensor(0)):
        model.zero_grad()
        loss = micro_loss(model, ids, labels, num_tokens=num_tokens)
        assert loss.item() == 0.0
        loss.backward()
        for parameter in model.parameters():
            assert torch.equal(parameter.grad, torch.zeros_like(parameter.grad))


def test_reduce_tokens_divides_the_masked_sum_by_the_count():
    per_token = logits(2, 4, seed=32)
    masked_sum = per_token[MASK].sum()
    assert reduce_tokens(per_token, MASK).item() == pytest.approx((masked_sum / MASK.sum()).item(), rel=1e-14)
    assert reduce_tokens(per_token, MASK, 20).item() == pytest.approx((masked_sum / 20).item(), rel=1e-14)
    assert reduce_tokens(per_token, MASK, torch.tensor(20.0)).item() == pytest.approx((masked_sum / 20).item())
    assert reduce_tokens(per_token, MASK).dim() == 0


# --- precision ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_logits_give_float32_values_computed_in_float32(name):
    s, t = logits(2, 4, 7, seed=33, dtype=torch.bfloat16), logits(2, 4, 7, seed=34, dtype=torch.bfloat16)
    value = call(name, s, t, temperature=2.0)
    assert value.dtype == torch.float32
    tau_sq = name != "tvd"
    assert torch.allclose(value.double(), brute_force(name, s.float(), t.float(), MASK, 2.0, tau_sq), atol=2e-6)
    targets = torch.tensor([[1, 2, IGNORE_INDEX, 3], [IGNORE_INDEX, 4, 5, 6]])
    assert next_token_cross_entropy(s, targets, MASK).dtype == torch.float32


@pytest.mark.parametrize("name", NAMES)
def test_under_autocast_the_values_are_float32_and_equal_the_float32_computation(name):
    torch.manual_seed(0)
    student_head, teacher_head = nn.Linear(5, 7), nn.Linear(5, 7)
    features = logits(2, 4, 5, seed=35, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s, t = student_head(features), teacher_head(features)
        assert s.dtype == torch.bfloat16
        value = call(name, s, t, temperature=2.0)
        ce = next_token_cross_entropy(s, torch.tensor([[1, 2, 0, 3], [0, 4, 5, 6]]), MASK)
    assert value.dtype == torch.float32 and ce.dtype == torch.float32
    reference = call(name, s.float(), t.float(), temperature=2.0)
    assert torch.allclose(value, reference, rtol=1e-6, atol=1e-7)
