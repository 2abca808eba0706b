"""The masked token-level losses of encoder distillation: identities, brute-force formulas, exact invariance to
padding, float32 under autocast, and hooked attention probabilities equal to the model's own (eager) attention."""

import math

import pytest
import torch
from transformers import BertConfig, BertModel

from kdlab.losses.encoder import (
    attention_kl,
    attention_probabilities,
    attention_score_mse,
    attention_scores,
    cls_cosine,
    hidden_mse,
    relation_kl,
    self_relation,
)
from kdlab.training.taps import Taps

B, T, HEADS = 3, 6, 4
LENGTHS = (6, 4, 2)  # real tokens per sequence; the rest is padding


def mask_of(lengths, length=T):
    return torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]


def features(width, seed, length=T):
    return torch.randn(B, length, width, generator=torch.Generator().manual_seed(seed))


def pad(x, mask, extra=3, seed=99):
    """``x`` ``[B, T, d]`` and its mask with ``extra`` more positions of garbage, all padded."""
    noise = 100 * torch.randn(x.shape[0], extra, x.shape[2], generator=torch.Generator().manual_seed(seed))
    return torch.cat([x, noise], 1), torch.cat([mask, torch.zeros(mask.shape[0], extra, dtype=torch.bool)], 1)


def garbage_on_padding(x, mask, seed=7):
    """``x`` with its padded positions replaced by large random values."""
    noise = 100 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return torch.where(mask[..., None], x, noise)


def every_loss(qs, ks, qt, kt, mask):
    """Each loss of the module on student (``qs``, ``ks``) and teacher (``qt``, ``kt``) projections."""
    probs_s, probs_t = attention_probabilities(qs, ks, HEADS, mask), attention_probabilities(qt, kt, HEADS, mask)
    return {
        "hidden_mse": hidden_mse(qs, qt, mask),
        "attention_score_mse": attention_score_mse(
            attention_scores(qs, ks, HEADS), attention_scores(qt, kt, HEADS), mask
        ),
        "attention_kl": attention_kl(probs_s, probs_t, mask),
        "relation_kl": relation_kl(qs, qt, 2, mask),
    }


# ---- identities ------------------------------------------------------------------------------------------------


def test_every_loss_is_zero_for_equal_inputs_and_positive_otherwise():
    mask = mask_of(LENGTHS)
    q, k = features(16, 0), features(16, 1)
    for name, value in every_loss(q, k, q.clone(), k.clone(), mask).items():
        assert abs(value.item()) < 1e-6, name
    for name, value in every_loss(q, k, features(16, 2), features(16, 3), mask).items():
        assert value.item() > 1e-3, name
    cls = features(16, 4)[:, 0]
    assert abs(cls_cosine(cls, cls.clone()).item()) < 1e-6
    assert cls_cosine(cls, features(16, 5)[:, 0]).item() > 1e-3
    assert cls_cosine(cls, 3 * cls).item() < 1e-6  # a cosine ignores the scale


def test_kl_of_a_distribution_with_itself_is_zero_and_relation_is_attention_of_x_with_itself():
    mask = mask_of(LENGTHS)
    x = features(16, 0)
    probs = attention_probabilities(x, features(16, 1), HEADS, mask)
    assert attention_kl(probs, probs, mask).item() == pytest.approx(0.0, abs=1e-7)
    assert torch.equal(self_relation(x, HEADS, mask), attention_probabilities(x, x, HEADS, mask))


def test_probabilities_sum_to_one_over_valid_keys_and_padded_keys_get_none():
    mask = mask_of(LENGTHS)
    probs = attention_probabilities(features(16, 0), features(16, 1), HEADS, mask)
    assert probs.shape == (B, HEADS, T, T) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(-1), torch.ones(B, HEADS, T))
    assert (probs * ~mask[:, None, None, :]).abs().max() == 0


# ---- brute force -----------------------------------------------------------------------------------------------


def test_scores_and_probabilities_equal_a_per_head_loop():
    q, k, mask = features(16, 0), features(16, 1), mask_of(LENGTHS)
    scores, probs = attention_scores(q, k, HEADS), attention_probabilities(q, k, HEADS, mask)
    size = 16 // HEADS
    for b, n in enumerate(LENGTHS):
        for h in range(HEADS):
            qh, kh = q[b, :, h * size : (h + 1) * size], k[b, :, h * size : (h + 1) * size]
            expected = qh @ kh.T / math.sqrt(size)
            torch.testing.assert_close(scores[b, h], expected)
            torch.testing.assert_close(probs[b, h, :, :n], torch.softmax(expected[:, :n], -1))


def brute_kl(student, teacher, lengths):
    """Mean over heads and real rows of Σ_j q log(q/p) over the real keys, one example at a time."""
    total, rows = 0.0, 0
    for b, n in enumerate(lengths):
        p, q = student[b, :, :n, :n].double(), teacher[b, :, :n, :n].double()
        total += (q * (q.log() - p.log())).sum().item()
        rows += n * student.shape[1]
    return total / rows


def test_attention_kl_equals_a_per_example_loop():
    mask = mask_of(LENGTHS)
    student = attention_probabilities(features(16, 0), features(16, 1), HEADS, mask)
    teacher = attention_probabilities(features(16, 2), features(16, 3), HEADS, mask)
    assert attention_kl(student, teacher, mask).item() == pytest.approx(brute_kl(student, teacher, LENGTHS), rel=1e-5)


def test_relation_kl_with_different_widths_equals_a_per_example_loop():
    mask = mask_of(LENGTHS)
    student, teacher = features(8, 0), features(32, 1)  # 2 relation heads: head widths 4 and 16
    expected = brute_kl(self_relation(student, 2, mask), self_relation(teacher, 2, mask), LENGTHS)
    assert relation_kl(student, teacher, 2, mask).item() == pytest.approx(expected, rel=1e-5)


def test_mse_losses_equal_a_per_example_loop():
    mask = mask_of(LENGTHS)
    s, t = features(16, 0), features(16, 1)
    squares = [((s[b, :n] - t[b, :n]) ** 2).sum() for b, n in enumerate(LENGTHS)]
    assert hidden_mse(s, t, mask).item() == pytest.approx(sum(squares).item() / (sum(LENGTHS) * 16), rel=1e-5)
    scores_s, scores_t = attention_scores(s, t, HEADS), attention_scores(t, s, HEADS)
    pairs = [((scores_s[b, :, :n, :n] - scores_t[b, :, :n, :n]) ** 2).sum() for b, n in enumerate(LENGTHS)]
    expected = sum(pairs).item() / (HEADS * sum(n * n for n in LENGTHS))
    assert attention_score_mse(scores_s, scores_t, mask).item() == pytest.approx(expected, rel=1e-5)


def test_cls_cosine_equals_its_formula():
    s, t = features(16, 0)[:, 0], features(16, 1)[:, 0]
    expected = sum(1 - (s[b] @ t[b]) / (s[b].norm() * t[b].norm()) for b in range(B)) / B
    assert cls_cosine(s, t).item() == pytest.approx(expected.item(), rel=1e-5)


# ---- padding ---------------------------------------------------------------------------------------------------


def test_more_padding_or_garbage_on_padding_changes_no_loss():
    mask = mask_of(LENGTHS)
    inputs = [features(16, seed) for seed in range(4)]
    reference = every_loss(*inputs, mask)
    padded = [pad(x, mask, seed=10 + i) for i, x in enumerate(inputs)]
    longer = every_loss(*(x for x, _ in padded), padded[0][1])
    dirty = every_loss(*(garbage_on_padding(x, mask, seed=i) for i, x in enumerate(inputs)), mask)
    for name, value in reference.items():
        assert longer[name].item() == pytest.approx(value.item(), abs=1e-6), name
        assert dirty[name].item() == pytest.approx(value.item(), abs=1e-6), name


def test_a_sequence_without_tokens_gives_finite_losses_and_gradients():
    mask = mask_of((6, 0, 3))
    q, k = features(16, 0).requires_grad_(), features(16, 1)
    loss = sum(every_loss(q, k, features(16, 2), features(16, 3), mask).values())
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(q.grad).all()
    assert q.grad[1].abs().max() == 0  # the empty sequence teaches nothing


# ---- precision -------------------------------------------------------------------------------------------------


def test_losses_run_in_float32_under_autocast():
    mask = mask_of(LENGTHS)
    q, k = features(16, 0), features(16, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probs = attention_probabilities(q.bfloat16(), k.bfloat16(), HEADS, mask)
        loss = relation_kl(q.bfloat16(), k.bfloat16(), 2, mask)
    assert probs.dtype == torch.float32 and loss.dtype == torch.float32
    reference = attention_probabilities(q.bfloat16().float(), k.bfloat16().float(), HEADS, mask)
    torch.testing.assert_close(probs, reference)  # no bfloat16 rounding of the products or the softmax


# ---- hooked attention = the model's attention ------------------------------------------------------------------


def tiny_config():
    return BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=HEADS, intermediate_size=64,
        max_position_embeddings=32,
    )  # fmt: skip


def test_attention_from_query_key_taps_of_sdpa_equals_eager_attentions():
    torch.manual_seed(0)
    sdpa = BertModel(tiny_config()).eval()
    # a separate config: _from_config sets the attention implementation on the config it is given
    eager = BertModel._from_config(tiny_config(), attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    ids, mask = torch.randint(1, 100, (B, T)), mask_of(LENGTHS)
    paths = [f"encoder.layer.{i}.attention.self.{role}" for i in range(2) for role in ("query", "key")]
    with Taps(sdpa, paths) as taps, torch.no_grad():
        sdpa(input_ids=ids, attention_mask=mask.long())
        tapped = taps.collect()
        reference = eager(input_ids=ids, attention_mask=mask.long(), output_attentions=True).attentions
    assert len(reference) == 2
    for i in range(2):
        probs = attention_probabilities(tapped[paths[2 * i]], tapped[paths[2 * i + 1]], HEADS, mask)
        rows = mask[:, None, :, None].expand_as(probs)
        torch.testing.assert_close(probs[rows], reference[i][rows], atol=1e-5, rtol=0)


def test_shape_mismatches_are_refused():
    mask = mask_of(LENGTHS)
    with pytest.raises(ValueError, match="equal shapes"):
        hidden_mse(features(16, 0), features(8, 1), mask)
    with pytest.raises(ValueError, match="mask"):
        hidden_mse(features(16, 0), features(16, 1), mask[:, :4])
    with pytest.raises(ValueError, match="heads"):
        relation_kl(features(12, 0), features(16, 1), 8, mask)
