"""Cross-tokenizer losses (kdlab.losses.cross_tokenizer) against independent numpy computations and their exact
relations to the same-vocabulary divergences."""

import math

import numpy as np
import pytest
import torch

from kdlab.losses import forward_kl, jsd, reverse_kl
from kdlab.losses.cross_tokenizer import hybrid, shared_vocabulary, uld

MASK = torch.tensor([[True, True, False], [False, True, True]])  # [B=2, M=3]


def logits(*shape: int, seed: int = 0, scale: float = 3.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale).to(dtype)


def np_softmax(z: np.ndarray, tau: float = 1.0) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64) / tau
    e = np.exp(z - z.max())
    return e / e.sum()


def np_uld(q: np.ndarray, p: np.ndarray) -> float:
    """The paper's recipe literally: sort each decreasingly, pad the shorter with zeros, sum |differences|."""
    size = max(len(q), len(p))
    q = np.pad(np.sort(q)[::-1], (0, size - len(q)))
    p = np.pad(np.sort(p)[::-1], (0, size - len(p)))
    return float(np.abs(q - p).sum())


def np_generalised(a: np.ndarray, b: np.ndarray) -> float:
    """Csiszár's I-divergence of positive measures, Σ a log(a/b) − a + b, one term at a time with 0·log 0 = 0."""
    return float(sum((x * math.log(x / y) if x > 0 else 0.0) - x + y for x, y in zip(a, b, strict=True)))


def per_position(fn, student: torch.Tensor, teacher: torch.Tensor) -> np.ndarray:
    """fn(q, p) at every position ``[B, M]``, masked like the losses."""
    out = np.zeros(MASK.shape)
    for b, m in zip(*np.nonzero(MASK.numpy()), strict=True):
        out[b, m] = fn(student[b, m].numpy(), teacher[b, m].numpy())
    return out


# --- ULD ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("vs", "vt", "tau"), [(7, 7, 1.0), (5, 11, 1.0), (11, 5, 2.0), (1, 6, 0.5)])
def test_uld_equals_the_sorted_padded_l1_of_numpy(vs, vt, tau):
    s, t = logits(2, 3, vs, seed=1), logits(2, 3, vt, seed=2)
    expected = per_position(lambda z_s, z_t: np_uld(np_softmax(z_s, tau), np_softmax(z_t, tau)), s, t)
    got = uld(s, t, MASK, temperature=tau)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert (got[~MASK] == 0).all()
    tempered = uld(s, t, MASK, temperature=tau, tau_squared=True)
    np.testing.assert_allclose(tempered.numpy(), tau**2 * expected, rtol=1e-12, atol=1e-12)


def test_uld_is_zero_for_a_permuted_copy_and_invariant_to_vocabulary_permutations():
    s, t = logits(2, 3, 9, seed=3), logits(2, 3, 13, seed=4)
    perm_s = torch.randperm(9, generator=torch.Generator().manual_seed(5))
    perm_t = torch.randperm(13, generator=torch.Generator().manual_seed(6))
    assert (uld(s, s[..., perm_s], MASK).abs() < 1e-14).all()  # 0 up to the softmax's summation order
    np.testing.assert_allclose(uld(s[..., perm_s], t[..., perm_t], MASK), uld(s, t, MASK), rtol=1e-12)
    padded = torch.cat([s, torch.full((2, 3, 4), -torch.inf, dtype=torch.float64)], -1)  # 4 tokens of probability 0
    np.testing.assert_allclose(uld(padded, t, MASK), uld(s, t, MASK), rtol=1e-12)  # the same as zero-padding


def test_uld_is_a_bounded_distance():
    s, t = logits(2, 3, 50, seed=7, scale=30.0), logits(2, 3, 80, seed=8, scale=30.0)
    values = uld(s, t, MASK)
    assert (values >= 0).all() and (values <= 2).all()
    peaked_s = torch.full((1, 1, 4), -1e4, dtype=torch.float64)
    peaked_s[..., 0] = 0.0
    flat_t = torch.zeros(1, 1, 1000, dtype=torch.float64)
    np.testing.assert_allclose(uld(peaked_s, flat_t, torch.ones(1, 1, dtype=torch.bool)).item(), 2 - 2 / 1000)


# --- hybrid ---------------------------------------------------------------------------------------------------------

SAME = {"forward_kl": (forward_kl, {}), "reverse_kl": (reverse_kl, {}), "jsd": (jsd, {"beta": 0.3})}


@pytest.mark.parametrize("divergence", list(SAME))
def test_hybrid_over_a_wholly_shared_permuted_vocabulary_equals_the_same_vocabulary_divergence(divergence):
    """Identical vocabularies, stored in different orders: teacher id ``perm[i]`` is student id ``i``."""
    v = 12
    s, t = logits(2, 3, v, seed=9), logits(2, 3, v, seed=10)
    perm = torch.randperm(v, generator=torch.Generator().manual_seed(11))
    teacher_stored = torch.empty_like(t)
    teacher_stored[..., perm] = t  # the teacher's logit of student token i sits at column perm[i]
    same, options = SAME[divergence]
    got = hybrid(s, teacher_stored, MASK, student_ids_of_shared=torch.arange(v), teacher_ids_of_shared=perm,
                 divergence=divergence, temperature=2.0, **options)  # fmt: skip
    expected = same(s, t, MASK, temperature=2.0, **options)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-10, atol=1e-12)
    zero = hybrid(s, s, MASK, student_ids_of_shared=torch.arange(v), teacher_ids_of_shared=torch.arange(v),
                  divergence=divergence, **options)  # fmt: skip
    np.testing.assert_allclose(zero.numpy(), 0.0, atol=1e-12)


def partial_vocabularies(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Student 10 tokens, teacher 14, 6 shared (student ids 1, 3, 4, 6, 8, 9 are teacher ids 13, 0, 5, 2, 7, 11)."""
    s, t = logits(2, 3, 10, seed=seed), logits(2, 3, 14, seed=seed + 1)
    return s, t, torch.tensor([1, 3, 4, 6, 8, 9]), torch.tensor([13, 0, 5, 2, 7, 11])


def np_hybrid(q: np.ndarray, p: np.ndarray, sid, tid, divergence: str, beta: float, uld_weight: float) -> float:
    q_s, p_s = q[sid], p[tid]
    if divergence == "forward_kl":
        value = np_generalised(p_s, q_s)
    elif divergence == "reverse_kl":
        value = np_generalised(q_s, p_s)
    else:
        m = beta * p_s + (1 - beta) * q_s
        value = beta * np_generalised(p_s, m) + (1 - beta) * np_generalised(q_s, m)
    rest_q, rest_p = np.delete(q, sid), np.delete(p, tid)
    return value + uld_weight * np_uld(rest_q, rest_p)


@pytest.mark.parametrize(("divergence", "beta"), [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.5), ("jsd", 0.2)])
def test_hybrid_with_a_partly_shared_vocabulary_equals_numpy(divergence, beta):
    s, t, sid, tid = partial_vocabularies(seed=12)
    got = hybrid(s, t, MASK, student_ids_of_shared=sid, teacher_ids_of_shared=tid, divergence=divergence,
                 beta=beta, temperature=1.5, tau_squared=False, uld_weight=0.7)  # fmt: skip
    expected = per_position(
        lambda z_s, z_t: np_hybrid(np_softmax(z_s, 1.5), np_softmax(z_t, 1.5), sid, tid, divergence, beta, 0.7), s, t
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)
    assert (got[~MASK] == 0).all()
    squared = hybrid(s, t, MASK, student_ids_of_shared=sid, teacher_ids_of_shared=tid, divergence=divergence,
                     beta=beta, temperature=1.5, uld_weight=0.0)  # fmt: skip
    divergence_only = per_position(
        lambda z_s, z_t: np_hybrid(np_softmax(z_s, 1.5), np_softmax(z_t, 1.5), sid, tid, divergence, beta, 0.0), s, t
    )
    np.testing.assert_allclose(squared.numpy(), 1.5**2 * divergence_only, rtol=1e-10, atol=1e-12)


def test_the_jsd_endpoints_are_the_generalised_kls():
    s, t, sid, tid = partial_vocabularies(seed=14)
    ids = {"student_ids_of_shared": sid, "teacher_ids_of_shared": tid}
    for beta, name in ((0.0, "forward_kl"), (1.0, "reverse_kl")):
        assert torch.equal(hybrid(s, t, MASK, divergence="jsd", beta=beta, **ids),
                           hybrid(s, t, MASK, divergence=name, **ids))  # fmt: skip


def test_the_divergence_part_is_zero_when_the_shared_probabilities_agree_whatever_the_rest():
    """Both give the shared tokens probabilities (0.1, 0.2, 0.3); the remaining 0.4 is split differently among 4
    teacher-only and 2 student-only tokens: D = 0 and only ULD sees the difference."""
    q = np.array([0.2, 0.15, 0.1, 0.3, 0.25])  # student ids 2, 0, 3 shared
    p = np.array([0.3, 0.1, 0.05, 0.05, 0.2, 0.1, 0.2])  # teacher ids 0, 5, 4 shared
    sid, tid = torch.tensor([2, 0, 3]), torch.tensor([5, 4, 0])
    s, t = torch.tensor(np.log(q))[None, None], torch.tensor(np.log(p))[None, None]
    one = torch.ones(1, 1, dtype=torch.bool)
    for divergence in SAME:
        value = hybrid(s, t, one, student_ids_of_shared=sid, teacher_ids_of_shared=tid, divergence=divergence,
                       uld_weight=0.0)  # fmt: skip
        assert abs(value.item()) < 1e-12
    both = hybrid(s, t, one, student_ids_of_shared=sid, teacher_ids_of_shared=tid)
    np.testing.assert_allclose(both.item(), np_uld(np.array([0.15, 0.25]), np.array([0.1, 0.05, 0.05, 0.2])))


def test_hybrid_is_finite_when_the_whole_student_vocabulary_is_shared():
    """Nested BPE vocabularies: the student has no token outside S (Q̄ = 0 < P̄), where an (S+1)-bin forward KL
    would be infinite."""
    s, t = logits(2, 3, 6, seed=15), logits(2, 3, 10, seed=16)
    s.requires_grad_(True)
    ids = {"student_ids_of_shared": torch.arange(6), "teacher_ids_of_shared": torch.tensor([0, 2, 4, 6, 8, 9])}
    value = hybrid(s, t, MASK, **ids)
    assert torch.isfinite(value).all() and (value[MASK] > 0).all()
    value.sum().backward()
    assert torch.isfinite(s.grad).all()


# --- numerics --------------------------------------------------------------------------------------------------------


def losses(s, t, mask):
    sid, tid = torch.tensor([1, 3, 4, 6, 8, 9]), torch.tensor([13, 0, 5, 2, 7, 11])
    yield "uld", uld(s, t, mask)
    for divergence in ("forward_kl", "jsd"):
        yield (
            divergence,
            hybrid(s, t, mask, student_ids_of_shared=sid, teacher_ids_of_shared=tid, divergence=divergence),
        )


def test_half_precision_inputs_give_float32_close_to_the_float32_values():
    s, t = logits(2, 3, 10, seed=17, dtype=torch.float32), logits(2, 3, 14, seed=18, dtype=torch.float32)
    for (name, half), (_, full) in zip(
        losses(s.bfloat16(), t.bfloat16(), MASK), losses(s.bfloat16().float(), t.bfloat16().float(), MASK), strict=True
    ):
        assert half.dtype == torch.float32, name
        torch.testing.assert_close(half, full, rtol=1e-5, atol=1e-6)


def test_gradients_are_finite_and_masked_positions_get_none():
    s, t = logits(2, 3, 10, seed=19, scale=20.0), logits(2, 3, 14, seed=20, scale=20.0)
    for name, _ in losses(s, t, MASK):
        student = s.clone().requires_grad_(True)
        value = dict(losses(student, t, MASK))[name]
        value.sum().backward()
        assert torch.isfinite(student.grad).all(), name
        assert (student.grad[~MASK] == 0).all() and (student.grad[MASK].abs().sum(-1) > 0).all(), name


def test_minus_infinity_teacher_logits_give_no_nan():
    s, t = logits(2, 3, 10, seed=21), logits(2, 3, 14, seed=22)
    t[..., [0, 1, 13]] = -torch.inf  # two shared teacher tokens (0, 13) and one teacher-only token (1)
    s.requires_grad_(True)
    for name, value in losses(s, t, MASK):
        assert torch.isfinite(value).all(), name
        (grad,) = torch.autograd.grad(value.sum(), s)
        assert torch.isfinite(grad).all(), name
    expected = per_position(lambda z_s, z_t: np_uld(np_softmax(z_s), np_softmax(z_t)), s.detach(), t)
    np.testing.assert_allclose(uld(s, t, MASK).detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_bad_arguments_are_refused():
    s, t, sid, tid = partial_vocabularies(seed=23)
    with pytest.raises(ValueError, match="divergence"):
        hybrid(s, t, MASK, student_ids_of_shared=sid, teacher_ids_of_shared=tid, divergence="tvd")
    with pytest.raises(ValueError, match="beta"):
        hybrid(s, t, MASK, student_ids_of_shared=sid, teacher_ids_of_shared=tid, divergence="jsd", beta=1.5)
    with pytest.raises(ValueError, match="1-D"):
        hybrid(s, t, MASK, student_ids_of_shared=sid, teacher_ids_of_shared=tid[:-1])
    with pytest.raises(ValueError, match="temperature"):
        uld(s, t, MASK, temperature=0.0)


# --- the shared vocabulary of two real tokenizers ---------------------------------------------------------------------


def test_shared_vocabulary_pairs_identical_strings_of_two_real_bpes():
    pytest.importorskip("tokenizers")
    pytest.importorskip("transformers")
    from kdlab.data.lm import byte_level_bpe

    source = "def add(a, b):\n    return a + b\n\nclass Point:\n    x: int = 0\n    y: int = 0\n"
    student = byte_level_bpe([source] * 20, 280, name="shared-test")
    teacher = byte_level_bpe([source.replace("Point", "Vector")] * 20, 300, name="shared-test")
    sid, tid = shared_vocabulary(student, teacher)
    assert sid.dtype == tid.dtype == torch.int64 and sid.shape == tid.shape
    assert sid.tolist() == sorted(sid.tolist()) and len(set(sid.tolist())) == len(sid)
    s_tokens, t_tokens = student.convert_ids_to_tokens(sid.tolist()), teacher.convert_ids_to_tokens(tid.tolist())
    assert s_tokens == t_tokens
    expected = set(student.get_vocab()) & set(teacher.get_vocab())
    assert set(s_tokens) == expected and "<|endoftext|>" in expected
    assert len(expected) < len(student.get_vocab())  # some merges differ ("Point" against "Vector")
    same_sid, same_tid = shared_vocabulary(student, student)
    assert torch.equal(same_sid, torch.arange(len(student))) and torch.equal(same_tid, same_sid)
