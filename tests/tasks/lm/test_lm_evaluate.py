"""Next-token fidelity equals an independent per-token computation; the sample figures score what the student wrote."""

import math

import pytest
import torch
from torch import nn

from kdlab.data.lm import LMLoader, LMTokens
from kdlab.tasks.lm.evaluate import BINS, next_token_figures, sample_figures

transformers = pytest.importorskip("transformers")
VOCAB = 12


class Table(nn.Module):
    """A bigram model: the logits of the next token are a row of a fixed table (no sampling interface needed)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(seed)) * 2)

    def forward(self, input_ids, attention_mask=None, logits_to_keep=0):
        logits = self.table[input_ids]
        return {"logits": logits[:, -logits_to_keep:] if logits_to_keep else logits}


def sequences() -> LMTokens:
    g = torch.Generator().manual_seed(0)
    lengths, prompts = torch.tensor([7, 4, 6]), torch.tensor([2, 0, 3])
    return LMTokens(torch.randint(0, VOCAB, (3, 7), generator=g), lengths, prompts, 7)


def brute_force(student: nn.Module, teacher: nn.Module, tokens: LMTokens) -> dict[str, float]:
    rows = []
    for i in range(len(tokens)):
        n, p = int(tokens.lengths[i]), int(tokens.prompt_lengths[i])
        for t in range(max(p, 1), n):  # token t is trained and predicted from position t − 1
            prev, target = int(tokens.input_ids[i, t - 1]), int(tokens.input_ids[i, t])
            q = student.table[prev].detach().double().softmax(-1)
            r = teacher.table[prev].detach().double().softmax(-1)
            rows.append({
                "nll": -math.log(q[target]), "accuracy": float(q.argmax() == target),
                "agreement": float(q.argmax() == r.argmax()),
                "kl": float((r * (r.log() - q.log())).sum()), "tv": float(0.5 * (q - r).abs().sum()),
                "top5_overlap": len(set(q.topk(5).indices.tolist()) & set(r.topk(5).indices.tolist())) / 5,
                "confidence": float(q.max()), "teacher_nll": -math.log(r[target]),
            })  # fmt: skip
    out = {k: sum(row[k] for row in rows) / len(rows) for k in rows[0]}
    bins = [[row for row in rows if min(int(row["confidence"] * BINS), BINS - 1) == b] for b in range(BINS)]
    out["ece"] = sum(abs(sum(r["confidence"] - r["accuracy"] for r in rows_b)) for rows_b in bins) / len(rows)
    out["tokens"] = len(rows)
    return out


@pytest.mark.parametrize("trim", [False, True])
def test_next_token_figures_equal_a_per_token_computation(trim):
    student, teacher = Table(1), Table(2)
    tokens = sequences()
    figures = next_token_figures(student, teacher, LMLoader(tokens, 2, trim_logits=trim).epoch(0))
    expected = brute_force(student, teacher, tokens)
    got = figures["student"]
    for key in ("nll", "accuracy", "agreement", "kl", "tv", "top5_overlap", "ece", "tokens"):
        assert got[key] == pytest.approx(expected[key], abs=1e-5), key
    assert got["perplexity"] == pytest.approx(math.exp(expected["nll"]), rel=1e-5)
    assert figures["teacher"]["nll"] == pytest.approx(expected["teacher_nll"], abs=1e-5)
    assert "agreement" not in figures["teacher"]


def test_a_student_equal_to_its_teacher_is_perfectly_faithful():
    model = Table(3)
    got = next_token_figures(model, model, LMLoader(sequences(), 3).epoch(0))["student"]
    assert got["agreement"] == 1.0 and got["top5_overlap"] == 1.0 and abs(got["kl"]) < 1e-6 and got["tv"] < 1e-6


def test_the_teacher_scores_the_students_samples_as_the_student_does_when_they_are_one_model():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    model, other = transformers.GPT2LMHeadModel(config), transformers.GPT2LMHeadModel(config)
    batches = list(LMLoader(sequences(), 2).epoch(0))
    same = sample_figures(model, model, batches, prompts=3, new_tokens=5)
    assert same["sample_teacher_logp"] == pytest.approx(same["sample_student_logp"]) and same["sample_tokens"] == 15
    apart = sample_figures(model, other, batches, prompts=3, new_tokens=5)
    assert apart["sample_student_logp"] == pytest.approx(same["sample_student_logp"])  # the same draws (seed 0)
    assert apart["sample_teacher_logp"] != pytest.approx(same["sample_teacher_logp"])
