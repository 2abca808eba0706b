"""Feature methods fitnets, at and sad: the maths of their losses and their behaviour as methods."""

import copy

import pytest
import torch
import torch.nn.functional as F

import kdlab.methods.feature  # noqa: F401  (registers fitnets, at, sad)
from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.losses.features import (
    attention_map,
    attention_transfer,
    hint,
    self_attention_distillation,
    self_attention_map,
)
from kdlab.methods import METHODS, MethodContext, build_method
from kdlab.models import MODELS
from kdlab.training.taps import Taps
from kdlab.training.teachers import Teacher

NAMES = ("fitnets", "at", "sad")
SHAPE = (1, 28, 28)


def resnet8():
    return MODELS.get("resnet8")(num_classes=10, in_channels=1)


def make(name, values=None, student=None, teacher=None):
    torch.manual_seed(0)
    teacher = Teacher(teacher or resnet8())
    student = student or MODELS.get("cnn")(num_classes=10, in_channels=1, width=4)
    method = build_method(name, values or {}, MethodContext(student, teacher, 10, input_shape=SHAPE))
    teacher.tap(method.teacher_layers)
    return student, teacher, method


def outputs(student, teacher, method, x):
    with Taps(student, method.student_layers, owner="student") as taps:
        logits = student(x)
        student_out = ModelOutput(logits, taps.collect())
    return student_out, teacher(x)


def batch(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return Batch(x=torch.rand(n, *SHAPE, generator=g), y=torch.randint(0, 10, (n,), generator=g), index=torch.arange(n))


# ---- pure losses -------------------------------------------------------------------------------


def test_zero_loss_for_equal_features():
    f = torch.randn(4, 6, 5, 5)
    assert attention_transfer(f, f.clone()) == 0
    assert self_attention_distillation(f, f.clone()) == 0
    assert hint(f, f.clone()) == 0


def test_attention_transfer_ignores_channel_count_and_scale():
    f, g = torch.randn(3, 5, 7, 7), torch.randn(3, 9, 7, 7)
    reference = attention_transfer(f, g)
    assert reference > 0
    torch.testing.assert_close(attention_transfer(torch.cat([f, f, f], dim=1), g), reference)
    torch.testing.assert_close(attention_transfer(f, torch.cat([g, g], dim=1)), reference)
    torch.testing.assert_close(attention_transfer(3.7 * f, g), reference)
    per_example = torch.tensor([0.1, 2.0, 50.0]).view(3, 1, 1, 1)
    torch.testing.assert_close(attention_transfer(f, per_example * g), reference)
    assert torch.allclose(attention_map(f).norm(dim=1), torch.ones(3))


def test_attention_transfer_pools_the_larger_map():
    g = torch.randn(2, 4, 4, 4)
    blocky = F.interpolate(g, scale_factor=2, mode="nearest")  # each 2×2 cell repeats one teacher value
    assert attention_transfer(blocky, g) < 1e-12
    assert attention_transfer(g, blocky) < 1e-12
    assert attention_transfer(torch.randn(2, 4, 8, 8), g) > 0


def test_self_attention_maps_are_distributions_and_resize_to_the_teacher():
    f = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(self_attention_map(f).sum(1), torch.ones(2))
    # constant energy stays constant under bilinear resizing: both maps are uniform
    assert self_attention_distillation(torch.ones(2, 3, 4, 4), torch.full((2, 5, 8, 8), 2.0)) < 1e-12
    assert self_attention_distillation(torch.randn(2, 3, 4, 4), torch.randn(2, 5, 8, 8)) > 0


def test_hint_needs_equal_shapes():
    with pytest.raises(ValueError, match="teacher's shape"):
        hint(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        attention_transfer(torch.randn(2, 3), torch.randn(2, 3))


@pytest.mark.parametrize(
    ("loss", "student_shape", "teacher_shape"),
    [
        (hint, (2, 3, 4, 4), (2, 3, 4, 4)),
        (hint, (3, 5), (3, 5)),
        (attention_transfer, (2, 3, 4, 4), (2, 2, 4, 4)),
        (attention_transfer, (2, 3, 6, 6), (2, 2, 3, 3)),
        (self_attention_distillation, (2, 3, 4, 4), (2, 2, 4, 4)),
        (self_attention_distillation, (2, 3, 3, 3), (2, 2, 5, 5)),
    ],
)
def test_gradcheck(loss, student_shape, teacher_shape):
    torch.manual_seed(0)
    s = torch.randn(*student_shape, dtype=torch.float64, requires_grad=True)
    t = torch.randn(*teacher_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(loss, (s, t))


# ---- methods -----------------------------------------------------------------------------------


def test_defaults_and_default_layers():
    assert METHODS.get("fitnets").params().weight == 100.0 and METHODS.get("at").params().weight == 1000.0
    assert all(METHODS.get(n).params().ce_weight == 1.0 for n in NAMES)
    _, _, fitnets = make("fitnets")
    assert (fitnets.student_layers, fitnets.teacher_layers) == (("stage2",), ("layer2",))
    for name in ("at", "sad"):
        _, _, method = make(name)
        assert method.student_layers == ("stage1", "stage2", "stage3")
        assert method.teacher_layers == ("layer1", "layer2", "layer3")


@pytest.mark.parametrize("name", NAMES)
def test_one_step_trains_the_student_and_the_regressor_never_the_teacher(name):
    student, teacher, method = make(name)
    b = batch()
    student_out, teacher_out = outputs(student, teacher, method, b.x)
    assert all(not f.requires_grad for f in teacher_out.features.values())
    terms = method(student_out, teacher_out, b)
    assert set(terms) == {"ce", name} and all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    terms[name].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    if name == "fitnets":
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters())


@pytest.mark.parametrize("name", ["at", "sad"])
def test_zero_term_when_the_student_computes_the_teachers_features(name):
    network = resnet8()
    student, teacher, method = make(name, student=copy.deepcopy(network), teacher=network)
    student.eval()
    terms = method(*outputs(student, teacher, method, batch().x), batch())
    assert terms[name] < 1e-10


@pytest.mark.parametrize("regressor", ["linear", "bn_relu"])
def test_fitnets_with_an_identity_regressor_is_zero(regressor):
    network = resnet8()
    student, teacher, method = make(
        "fitnets", {"regressor": regressor}, student=copy.deepcopy(network), teacher=network
    )
    student.eval(), method.eval()
    conv = method.regressors[0][0]
    with torch.no_grad():
        conv.weight.copy_(torch.eye(32).view(32, 32, 1, 1))
        conv.bias.zero_()
    if regressor == "bn_relu":
        method.regressors[0][1].eps = 0.0  # running mean 0 and variance 1: exactly the identity in eval mode
    terms = method(*outputs(student, teacher, method, batch().x), batch())
    assert terms["fitnets"] < 1e-10  # only the rounding of the 1×1 convolution


def test_fitnets_regressors_fit_the_teachers_shape():
    student, teacher, method = make(
        "fitnets",
        {"student_layers": ["stage1", "stage3", "flatten"], "teacher_layers": ["layer2", "layer2", "flatten"]},
    )
    assert [type(m) for m in method.regressors[2]] == [torch.nn.Linear, torch.nn.BatchNorm1d, torch.nn.ReLU]
    assert method.regressors[0][0].weight.shape == (32, 4, 1, 1) and method.regressors[1][0].in_channels == 16
    terms = method(*outputs(student, teacher, method, batch().x), batch())  # 28→14 pooled, 7→14 interpolated
    assert torch.isfinite(terms["fitnets"])


def test_fitnets_regressor_is_checkpointed():
    _, _, method = make("fitnets")
    state = method.state_dict()
    assert {"regressors.0.0.weight", "regressors.0.1.running_mean"} <= set(state)
    _, _, fresh = make("fitnets", {"weight": 3.0})
    with torch.no_grad():
        fresh.regressors[0][0].weight.add_(1.0)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.regressors[0][0].weight, method.regressors[0][0].weight)


@pytest.mark.parametrize("name", NAMES)
def test_a_few_steps_reduce_the_distillation_term(name):
    student, teacher, method = make(name)
    b = batch(16)
    optimizer = torch.optim.SGD([*student.parameters(), *method.parameters()], lr=0.1)
    values = []
    for _ in range(10):
        terms = method(*outputs(student, teacher, method, b.x), b)
        values.append(terms[name].detach())
        optimizer.zero_grad()
        sum(terms.values()).backward()
        optimizer.step()
    assert values[-1] < 0.85 * values[0]  # sad is the slowest: about 0.77 after 10 steps


@pytest.mark.parametrize("name", ["at", "sad"])
def test_vector_layers_are_refused_with_their_name_and_shape(name):
    with pytest.raises(ConfigError, match=r"'flatten'.*\(16,\).*\[C, H, W\]"):
        make(name, {"student_layers": ["flatten"], "teacher_layers": ["layer3"]})
    with pytest.raises(ConfigError, match=r"teacher layer 'flatten'.*\(64,\).*\[C, H, W\]"):
        make(name, {"student_layers": ["stage3"], "teacher_layers": ["flatten"]})


@pytest.mark.parametrize("name", NAMES)
def test_unequal_layer_counts_and_bad_settings_are_refused(name):
    with pytest.raises(ConfigError, match="one to one"):
        make(name, {"student_layers": ["stage1", "stage2"], "teacher_layers": ["layer2"]})
    with pytest.raises(ConfigError, match="must be ≥ 0"):
        make(name, {"weight": -1.0})
    teacher = Teacher([resnet8(), resnet8()])
    student = MODELS.get("cnn")(num_classes=10, in_channels=1, width=4)
    with pytest.raises(ConfigError, match="ensemble"):
        build_method(name, {}, MethodContext(student, teacher, 10, input_shape=SHAPE))


def test_fitnets_refuses_a_map_paired_with_a_vector():
    with pytest.raises(ConfigError, match=r"teacher layer 'flatten'.*\(64,\).*'stage3'"):
        make("fitnets", {"student_layers": ["stage3"], "teacher_layers": ["flatten"]})
