import pytest
import torch

from kdlab.core.errors import ConfigError
from kdlab.models import MODELS
from kdlab.training.interpolation import interpolate_from_teacher, interpolate_state, recalibrate_norm_statistics


def net(seed: int, norm: str = "batch") -> torch.nn.Module:
    torch.manual_seed(seed)
    return MODELS.get("cnn")(num_classes=5, in_channels=1, width=4, norm=norm)


def batches(seed: int = 0, n: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(16, 1, 12, 12, generator=g) for _ in range(n)]


def test_the_ends_of_the_line_are_the_fresh_init_and_the_teacher():
    teacher, fresh = net(0).state_dict(), net(1).state_dict()
    teacher["stage1.1.num_batches_tracked"] += 7
    at0, at1 = interpolate_state(teacher, fresh, 0.0), interpolate_state(teacher, fresh, 1.0)
    for key, value in fresh.items():
        assert torch.equal(at0[key], value)
        if value.is_floating_point():
            assert torch.equal(at1[key], teacher[key])
    half = interpolate_state(teacher, fresh, 0.25)
    key = "fc.weight"
    assert torch.allclose(half[key], 0.25 * teacher[key] + 0.75 * fresh[key])


def test_integer_buffers_are_not_interpolated():
    teacher, fresh = net(0).state_dict(), net(1).state_dict()
    counters = [k for k, v in fresh.items() if not v.is_floating_point()]
    assert counters, "the test net should have BatchNorm counters"
    teacher = {k: v + 10 if k in counters else v for k, v in teacher.items()}
    mixed = interpolate_state(teacher, fresh, 0.5)
    assert all(torch.equal(mixed[k], fresh[k]) for k in counters)


def test_recalibration_sets_batchnorm_statistics_to_the_mean_of_the_batches_and_nothing_else():
    model = net(0).eval()
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    data = batches()
    assert recalibrate_norm_statistics(model, data) == 3
    first_bn = model.stage1[1]
    conv_out = [model.stage1[0](model.normalize(x)) for x in data]
    expected = torch.stack([c.mean(dim=(0, 2, 3)) for c in conv_out]).mean(0)
    assert torch.allclose(first_bn.running_mean, expected, atol=1e-6)
    assert first_bn.momentum == 0.1 and not model.training and not first_bn.training  # modes restored
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())


def test_at_lambda_one_the_recalibrated_student_predicts_exactly_like_the_teacher():
    data = batches()
    teacher = net(0)
    recalibrate_norm_statistics(teacher, data)  # the teacher's statistics over the same data
    student = interpolate_from_teacher(net(1), teacher, 1.0, data)
    probe = torch.rand(8, 1, 12, 12)
    with torch.no_grad():
        assert torch.allclose(student.eval()(probe), teacher.eval()(probe), atol=1e-5)


def test_at_lambda_zero_it_is_a_fresh_init_and_layernorm_nets_need_no_recalibration():
    fresh = net(1)
    expected = {k: v.clone() for k, v in fresh.state_dict().items()}
    interpolate_from_teacher(fresh, net(0), 0.0)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in expected.items())
    teacher, student = net(0, "layer"), net(1, "layer")
    assert recalibrate_norm_statistics(student, batches()) == 0
    interpolate_from_teacher(student, teacher, 1.0)
    probe = torch.rand(8, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(student(probe), teacher(probe))


def test_midway_weights_differ_from_both_ends():
    teacher, fresh = net(0), net(1)
    mixed = interpolate_from_teacher(net(1), teacher, 0.375, batches())
    w = mixed.fc.weight
    assert not torch.allclose(w, teacher.fc.weight) and not torch.allclose(w, fresh.fc.weight)


def test_bad_lambda_and_other_architectures_are_clear_errors():
    with pytest.raises(ConfigError, match=r"\[0, 1\].*1.5"):
        interpolate_state(net(0).state_dict(), net(1).state_dict(), 1.5)
    wider = MODELS.get("cnn")(num_classes=5, in_channels=1, width=8).state_dict()
    with pytest.raises(ConfigError, match="shape"):
        interpolate_state(wider, net(1).state_dict(), 0.5)
    with pytest.raises(ConfigError, match="architecture"):
        interpolate_state(net(0, "layer").state_dict(), net(1).state_dict(), 0.5)
