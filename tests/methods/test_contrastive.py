"""CRD: the NCE loss (gradcheck, monotonicity, a hand computation), the memory banks and the method."""

import math

import pytest
import torch

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.losses.contrastive import contrast_scores, estimate_partition, nce_loss
from kdlab.methods import build_method
from kdlab.methods.base import MethodContext
from kdlab.methods.contrastive import ContrastiveRepresentation  # registers crd
from kdlab.models import MODELS
from kdlab.training.taps import Taps
from kdlab.training.teachers import Teacher

SHAPE = (1, 12, 12)


def test_gradcheck_nce_loss_and_scores():
    g = torch.Generator().manual_seed(0)
    anchor = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    bank = torch.randn(20, 4, generator=g, dtype=torch.float64, requires_grad=True)
    rows = torch.randint(0, 20, (3, 1 + 5), generator=g)
    z = torch.tensor(3.0, dtype=torch.float64)
    torch.autograd.gradcheck(lambda a, m: nce_loss(contrast_scores(a, m, rows), 20, 0.5, z), (anchor, bank))
    assert torch.allclose(contrast_scores(anchor, bank, rows), torch.einsum("bd,bkd->bk", anchor, bank[rows]))
    large = torch.randn(1000, 4, generator=g, dtype=torch.float64, requires_grad=True)  # 64·6 < 1000: row gather
    torch.autograd.gradcheck(lambda a, m: nce_loss(contrast_scores(a, m, rows), 20, 0.5, z), (anchor, large))
    assert torch.allclose(contrast_scores(anchor, large, rows), torch.einsum("bd,bkd->bk", anchor, large[rows]))
    scores = torch.randn(3, 1 + 5, generator=g, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda s: nce_loss(s, 20, 0.07), (scores,))


def test_nce_loss_by_hand_with_two_negatives():
    scores, m, tau, z = torch.tensor([[0.5, 0.1, -0.2], [0.0, 0.3, 0.9]]), 10, 0.5, 2.0
    c = z * 2 / m

    def h(s: float) -> float:
        return math.exp(s / tau) / (math.exp(s / tau) + c)

    rows = [-math.log(h(r[0])) - math.log(1 - h(r[1])) - math.log(1 - h(r[2])) for r in scores.tolist()]
    expected = sum(rows) / 2
    assert nce_loss(scores, m, tau, z).item() == pytest.approx(expected, rel=1e-6)
    assert nce_loss(scores, m, tau, torch.tensor(z)).item() == pytest.approx(expected, rel=1e-6)


def test_nce_loss_falls_as_the_positive_pair_gets_closer_and_rises_with_the_negatives():
    base = torch.tensor([[0.0, 0.2, -0.1, 0.4]]).repeat(7, 1)
    steps = torch.linspace(-1, 1, 7)
    positive, negative = base.clone(), base.clone()
    positive[:, 0] = steps
    negative[:, 2] = steps
    assert (torch.stack([nce_loss(row[None], 100, 0.07) for row in positive]).diff() < 0).all()
    assert (torch.stack([nce_loss(row[None], 100, 0.07) for row in negative]).diff() > 0).all()


def test_partition_estimate_is_m_times_the_mean_exponential():
    scores = torch.tensor([[0.1, -0.3], [0.2, 0.0]])
    expected = 50 * sum(math.exp(s / 0.1) for s in scores.flatten().tolist()) / 4
    assert estimate_partition(scores, 50, 0.1).item() == pytest.approx(expected, rel=1e-6)


def _pair(seed: int = 0) -> tuple[torch.nn.Module, Teacher]:
    torch.manual_seed(seed)
    student = MODELS.get("cnn")(num_classes=10, in_channels=1, width=4)
    teacher = Teacher(MODELS.get("resnet8")(num_classes=10, in_channels=1))
    return student, teacher


def _method(student, teacher, num_train=64, **values) -> ContrastiveRepresentation:
    method = build_method("crd", values, MethodContext(student, teacher, 10, SHAPE, num_train))
    teacher.tap(method.teacher_layers)
    return method


def _student(student, method, x):
    with Taps(student, method.student_layers, owner="student") as taps:
        return ModelOutput(student(x), taps.collect())


def _outputs(student, teacher, method, x):
    return _student(student, method, x), teacher(x)


def _batch(index: list[int]) -> Batch:
    g = torch.Generator().manual_seed(sum(index))
    x, y = torch.rand(len(index), *SHAPE, generator=g), torch.randint(0, 10, (len(index),), generator=g)
    return Batch(x, y, torch.tensor(index))


def test_defaults_and_state_dict():
    student, teacher = _pair()
    method = _method(student, teacher, num_train=10000)
    assert method.student_layers == ("flatten",) and method.teacher_layers == ("flatten",)
    assert method.num_negatives == 4096 and method.memory_student.shape == (10000, 128)
    keys = {"memory_student", "memory_teacher", "partition", "embed_student.linear.weight", "embed_teacher.linear.bias"}
    assert keys <= set(method.state_dict())
    bank, bound = method.memory_teacher, math.sqrt(3 / 128)  # U(−a, a), a = 1/sqrt(128/3): unit rows on average
    assert bank.norm(dim=1).mean().item() == pytest.approx(1.0, abs=0.02) and bank.abs().max() <= bound


def test_memory_bank_update_is_the_momentum_rule_on_the_batch_rows_only():
    student, teacher = _pair()
    method = _method(student, teacher)
    batch = _batch([3, 10, 7, 40])
    s_out, t_out = _outputs(student, teacher, method, batch.x)
    before_s, before_t = method.memory_student.clone(), method.memory_teacher.clone()
    with torch.no_grad():
        s = method.embed_student(s_out.features["flatten"])
        t = method.embed_teacher(t_out.features["flatten"])
    method(s_out, t_out, batch)
    rows = batch.index
    for bank, before, value in ((method.memory_student, before_s, s), (method.memory_teacher, before_t, t)):
        mixed = 0.5 * before[rows] + 0.5 * value
        assert torch.equal(bank[rows], mixed / mixed.norm(dim=1, keepdim=True))
        assert torch.allclose(bank[rows].norm(dim=1), torch.ones(4))
        others = torch.ones(64, dtype=torch.bool)
        others[rows] = False
        assert torch.equal(bank[others], before[others])


def test_eval_mode_leaves_the_banks_alone_and_the_partition_is_estimated_once():
    student, teacher = _pair()
    method = _method(student, teacher)
    assert torch.equal(method.partition, torch.zeros(2))
    method.eval()
    method(*_outputs(student, teacher, method, _batch([1, 2]).x), _batch([1, 2]))
    assert torch.equal(method.partition, torch.zeros(2))
    method.train()
    method(*_outputs(student, teacher, method, _batch([1, 2]).x), _batch([1, 2]))
    first = method.partition.clone()
    assert (first > 0).all()
    method(*_outputs(student, teacher, method, _batch([5, 6]).x), _batch([5, 6]))
    assert torch.equal(method.partition, first)
    assert torch.equal(_method(student, teacher, partition="one").partition, torch.ones(2))


def test_a_fresh_method_loaded_from_the_state_dict_gives_the_same_next_loss():
    student, teacher = _pair()
    method = _method(student, teacher)
    method(*_outputs(student, teacher, method, _batch([0, 1, 2]).x), _batch([0, 1, 2]))
    state = {k: v.clone() for k, v in method.state_dict().items()}
    rng = torch.get_rng_state()
    batch = _batch([4, 5, 6, 9])
    expected = method(*_outputs(student, teacher, method, batch.x), batch)["crd"]
    torch.manual_seed(123)
    fresh = _method(student, teacher)
    assert not torch.equal(fresh.memory_teacher, state["memory_teacher"])
    fresh.load_state_dict(state)
    torch.set_rng_state(rng)
    assert torch.equal(fresh(*_outputs(student, teacher, fresh, batch.x), batch)["crd"], expected)


def test_gradients_reach_the_student_and_both_heads_but_not_the_teacher():
    student, teacher = _pair()
    method = _method(student, teacher, ce_weight=0.0)
    batch = _batch([1, 2, 3])
    terms = method(*_outputs(student, teacher, method, batch.x), batch)
    assert set(terms) == {"crd"}
    terms["crd"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    assert all(b.grad is None for b in method.buffers())


def test_the_bank_update_does_not_change_this_step_s_gradient():
    student, teacher = _pair()
    method = _method(student, teacher, ce_weight=0.0)
    batch = _batch([1, 2, 3])
    outputs = _outputs(student, teacher, method, batch.x)
    state, rng = {k: v.clone() for k, v in method.state_dict().items()}, torch.get_rng_state()
    method(*outputs, batch)["crd"].backward(retain_graph=True)
    trained = [p.grad.clone() for p in method.parameters()]
    method.zero_grad()
    method.load_state_dict(state)
    torch.set_rng_state(rng)
    method.eval()  # no bank update: the gradient of the loss on the banks as they were
    method(*outputs, batch)["crd"].backward()
    assert all(torch.equal(p.grad, g) for p, g in zip(method.parameters(), trained, strict=True))


def test_the_current_positive_is_the_pair_of_embeddings_and_the_bank_positive_the_bank_row():
    student, teacher = _pair()
    method = _method(student, teacher, ce_weight=0.0, partition="one", negatives=1)
    batch = _batch([1, 2, 3])
    outputs = _outputs(student, teacher, method, batch.x)
    with torch.no_grad():
        s = method.embed_student(outputs[0].features["flatten"])
        t = method.embed_teacher(outputs[1].features["flatten"])
    banks = method.memory_student.clone(), method.memory_teacher.clone()
    for positive in ("bank", "current"):
        method.params.positive = positive
        method.memory_student, method.memory_teacher = banks[0].clone(), banks[1].clone()
        torch.manual_seed(0)
        rows = method.sample(batch.index)
        torch.manual_seed(0)
        loss = method(*outputs, batch)["crd"] / 0.8
        pair_s, pair_t = (s * t).sum(1), (s * t).sum(1)
        if positive == "bank":
            pair_s, pair_t = (s * banks[1][batch.index]).sum(1), (t * banks[0][batch.index]).sum(1)
        scores_s = torch.stack([pair_s, (s * banks[1][rows[:, 1]]).sum(1)], 1)
        scores_t = torch.stack([pair_t, (t * banks[0][rows[:, 1]]).sum(1)], 1)
        expected = nce_loss(scores_s, 64, 0.07) + nce_loss(scores_t, 64, 0.07)
        assert torch.allclose(loss, expected, rtol=1e-5), positive


def test_negatives_are_clamped_uniform_and_never_the_positive():
    student, teacher = _pair()
    method = _method(student, teacher, num_train=64)
    assert method.num_negatives == 63 and _method(student, teacher, num_train=64, negatives=10).num_negatives == 10
    index = torch.arange(64)
    torch.manual_seed(5)
    rows = method.sample(index)
    torch.manual_seed(5)
    assert torch.equal(method.sample(index), rows)  # the global RNG: a resumed run replays the draws
    assert rows.shape == (64, 64) and torch.equal(rows[:, 0], index)
    assert (rows[:, 1:] != index[:, None]).all() and rows.min() >= 0 and rows.max() < 64
    counts = torch.bincount(method.sample(torch.zeros(20000, dtype=torch.long))[:, 1:].flatten(), minlength=64)
    assert counts[0] == 0 and counts[1:].float().std() / counts[1:].float().mean() < 0.02


def test_configuration_errors():
    student, teacher = _pair()
    with pytest.raises(ConfigError, match="training-set size"):
        _method(student, teacher, num_train=0)
    with pytest.raises(ConfigError, match="ensemble"):
        _method(student, Teacher([MODELS.get("resnet8")(num_classes=10, in_channels=1) for _ in range(2)]))
    with pytest.raises(ConfigError, match="one student layer"):
        _method(student, teacher, student_layers=("stage2", "flatten"))
    with pytest.raises(ConfigError):
        _method(student, teacher, teacher_layers=("nowhere",))
    with pytest.raises(ConfigError, match="temperature"):
        _method(student, teacher, temperature=0.0)


def test_a_conv_map_is_flattened_and_training_with_crd_alone_aligns_the_student_with_the_teacher():
    # A random resnet8 maps noise images to nearly one vector (cosine 0.99), which nothing can contrast;
    # stand-in teacher features that tell the 64 examples apart make the check meaningful.
    student, teacher = _pair()
    method = _method(student, teacher, ce_weight=0.0, student_layers=("stage3",))
    assert method.embed_student.linear.in_features == 16 * 3 * 3
    optimizer = torch.optim.Adam([*student.parameters(), *method.parameters()], lr=3e-3)
    batch = _batch(list(range(64)))
    teacher_out = ModelOutput(torch.zeros(64, 10), {"flatten": torch.randn(64, 64)})
    losses = []
    for _ in range(25):
        loss = method(_student(student, method, batch.x), teacher_out, batch)["crd"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.5 * losses[0]
    with torch.no_grad():  # each student embedding is nearest to the teacher's bank row of its own example
        s = method.embed_student(_student(student, method, batch.x).features["stage3"])
        similarity = s @ method.memory_teacher.T
    assert (similarity.argmax(1) == batch.index).float().mean() > 0.9
