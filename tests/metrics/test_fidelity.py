import math

import pytest
import torch

from kdlab.metrics import accuracy, agreement, ece, fidelity_metrics, nll, predictive_kl, read, total_variation


def probs_to_logits(p: list[list[float]]) -> torch.Tensor:
    return torch.tensor(p, dtype=torch.float64).log()


def test_accuracy_and_agreement_by_hand():
    student = probs_to_logits([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
    teacher = probs_to_logits([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]])
    targets = torch.tensor([0, 1, 1, 0])
    assert accuracy(student_logits=student, targets=targets).item() == pytest.approx(0.75)
    assert agreement(student_logits=student, teacher_logits=teacher).item() == pytest.approx(0.5)


def test_nll_takes_one_entry_per_example():
    # distinct targets: the correct value averages p[i, y_i]; the B×B indexing bug would average a whole matrix
    p = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]
    targets = torch.tensor([0, 1, 2])
    expected = -(math.log(0.7) + math.log(0.8) + math.log(0.4)) / 3
    assert nll(student_logits=probs_to_logits(p), targets=targets).item() == pytest.approx(expected)
    buggy = -torch.tensor(p).log()[..., targets].mean().item()
    assert abs(buggy - expected) > 0.1


def test_ece_with_hand_computed_bins():
    # confidences 0.95, 0.95 (bin 10: one right, one wrong), 0.55 (bin 6: right), 0.65 (bin 7: wrong)
    p = [[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.35, 0.65]]
    targets = torch.tensor([0, 1, 0, 0])
    expected = (2 / 4) * abs(0.5 - 0.95) + (1 / 4) * abs(1 - 0.55) + (1 / 4) * abs(0 - 0.65)
    assert ece(student_logits=probs_to_logits(p), targets=targets).item() == pytest.approx(expected)


def test_ece_bin_edges_are_right_closed():
    # a confidence of exactly 0.6 falls in bin (0.5, 0.6], not (0.6, 0.7]: |1 − 0.6| either way, so use two points
    p = [[0.6, 0.4], [0.6, 0.4], [0.7, 0.3]]
    targets = torch.tensor([0, 1, 0])
    expected = (2 / 3) * abs(0.5 - 0.6) + (1 / 3) * abs(1 - 0.7)
    assert ece(student_logits=probs_to_logits(p), targets=targets).item() == pytest.approx(expected)


def test_predictive_kl_teacher_first_and_zero_for_equal():
    t = probs_to_logits([[0.9, 0.1]])
    s = probs_to_logits([[0.5, 0.5]])
    expected = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    reverse = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert predictive_kl(student_logits=s, teacher_logits=t).item() == pytest.approx(expected)
    assert predictive_kl(student_logits=t, teacher_logits=s).item() == pytest.approx(reverse)
    assert predictive_kl(student_logits=t, teacher_logits=t).item() == pytest.approx(0.0, abs=1e-12)


def test_total_variation_by_hand():
    t = probs_to_logits([[0.9, 0.1, 0.0001], [0.2, 0.3, 0.5]])
    s = probs_to_logits([[0.5, 0.5, 0.0001], [0.2, 0.3, 0.5]])
    t_p, s_p = t.softmax(-1), s.softmax(-1)
    expected = 0.5 * (t_p - s_p).abs().sum(-1).mean().item()
    assert total_variation(student_logits=s, teacher_logits=t).item() == pytest.approx(expected)
    assert expected == pytest.approx(0.2, abs=1e-3)


def test_fidelity_metrics_reads_everything_at_once():
    z = torch.randn(50, 10)
    out = read(fidelity_metrics(student_logits=z, targets=torch.randint(0, 10, (50,)), teacher_logits=z))
    assert set(out) == {"accuracy", "nll", "ece", "agreement", "kl", "tv"}
    assert all(isinstance(v, float) for v in out.values())
    assert out["agreement"] == 1.0 and out["kl"] == pytest.approx(0, abs=1e-12) and out["tv"] == pytest.approx(0)
