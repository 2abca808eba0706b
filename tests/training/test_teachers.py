import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.training.teachers import Teacher


def bn_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))


def test_teacher_is_frozen_and_stays_in_eval_mode():
    member = bn_net(0)
    teacher = Teacher(member)
    teacher.train()  # must not unfreeze
    assert not teacher.training and not member.training
    assert not any(p.requires_grad for p in teacher.parameters())
    stats = member[1].running_mean.clone()
    x = torch.randn(16, 4) * 5 + 3
    out1, out2 = teacher(x).logits, teacher(x).logits
    assert torch.equal(out1, out2)  # no dropout
    assert torch.equal(member[1].running_mean, stats)  # BN statistics untouched
    assert not out1.requires_grad


def test_ensemble_logits_are_log_mean_softmax_of_members():
    members = [bn_net(s).eval() for s in range(3)]
    x = torch.randn(5, 4)
    out = Teacher(members)(x)
    probs = torch.stack([F.softmax(m(x), -1) for m in members], 1).mean(1)
    assert torch.allclose(out.logits, probs.log(), atol=1e-6)
    assert out.member_logits.shape == (5, 3, 3)


def test_ensemble_of_one_equals_its_member():
    member = bn_net(1).eval()
    x = torch.randn(5, 4)
    assert torch.equal(Teacher([member])(x).logits, member(x))


def test_teacher_layers_need_a_single_member():
    with pytest.raises(ConfigError, match="single teacher"):
        Teacher([bn_net(0), bn_net(1)], layers=["1"])
    teacher = Teacher(bn_net(0), layers=["2"])
    out = teacher(torch.randn(3, 4))
    assert set(out.features) == {"2"} and out.features["2"].shape == (3, 8)
