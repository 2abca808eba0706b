"""Relational methods sp, rkd, pkt, gkd and topology as methods: layers, terms, gradients, errors."""

import copy

import pytest
import torch
from torch import nn

import kdlab.methods.relational  # noqa: F401  (registers sp, rkd, pkt, gkd, topology)
from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.data.loader import ImageExtras
from kdlab.losses.relations import gkd_loss
from kdlab.methods import METHODS, MethodContext, build_method
from kdlab.models import MODELS
from kdlab.training.taps import Taps
from kdlab.training.teachers import Teacher

NAMES = ("sp", "rkd", "pkt", "gkd", "topology")
SHAPE = (1, 28, 28)
DEFAULTS = {  # (student cnn, teacher resnet8)
    "sp": (("stage3",), ("layer3",)),
    "rkd": (("flatten",), ("flatten",)),
    "pkt": (("flatten",), ("flatten",)),
    "gkd": (("stage1", "stage2", "flatten"), ("layer1", "layer2", "flatten")),
    "topology": (("flatten",), ("flatten",)),
}


def resnet8():
    return MODELS.get("resnet8")(num_classes=10, in_channels=1)


def make(name, values=None, student=None, teacher=None, shape=SHAPE):
    torch.manual_seed(0)
    teacher = Teacher(teacher or resnet8())
    student = student or MODELS.get("cnn")(num_classes=10, in_channels=1, width=4)
    method = build_method(name, values or {}, MethodContext(student, teacher, 10, input_shape=shape))
    teacher.tap(method.teacher_layers)
    return student, teacher, method


def outputs(student, teacher, method, x):
    with Taps(student, method.student_layers, owner="student") as taps:
        student_out = ModelOutput(student(x), taps.collect())
    return student_out, teacher(x)


def batch(n=8, seed=1, **mix):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, *SHAPE, generator=g), torch.randint(0, 10, (n,), generator=g)
    return Batch(x=x, y=y, index=torch.arange(n), extras=ImageExtras(**mix))


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_defaults_and_a_summary(name):
    entry = METHODS.get(name)
    assert entry.summary and entry.params().ce_weight == 1.0
    _, _, method = make(name)
    assert (method.student_layers, method.teacher_layers) == DEFAULTS[name]
    assert method.needs_teacher and not list(method.parameters())  # dimension-agnostic: nothing to train


def test_paper_weights():
    weights = {name: METHODS.get(name).params().weight for name in NAMES}
    assert weights == {"sp": 3000.0, "rkd": 1.0, "pkt": 30000.0, "gkd": 25.0, "topology": 0.001}
    rkd = METHODS.get("rkd").params()
    assert (rkd.distance_weight, rkd.angle_weight) == (25.0, 50.0)


@pytest.mark.parametrize("name", NAMES)
def test_one_step_reaches_only_the_student(name):
    student, teacher, method = make(name)
    b = batch()
    terms = method(*outputs(student, teacher, method, b.x), b)
    assert set(terms) == {"ce", name}
    assert all(t.dim() == 0 and torch.isfinite(t) for t in terms.values()) and terms[name] > 0
    sum(terms.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad and p.dim() > 1)


@pytest.mark.parametrize("name", NAMES)
def test_the_teacher_as_its_own_student_costs_nothing(name):
    net = resnet8()
    student = copy.deepcopy(net).eval()  # same weights, same (eval) mode as the frozen teacher
    _, teacher, method = make(name, {"ce_weight": 0.0}, student=student, teacher=net)
    b = batch()
    terms = method(*outputs(student, teacher, method, b.x), b)
    assert set(terms) == {name}  # float32 rounding only (the teacher runs channels-last)
    assert terms[name].item() / method.params.weight == pytest.approx(0.0, abs=1e-7)


def test_gkd_term_is_lambda_times_the_mean_over_layers():
    student, teacher, method = make("gkd", {"k": 3, "power": 2, "edges": "inter"})
    b = batch(n=10, seed=2)
    s, t = outputs(student, teacher, method, b.x)
    terms = method(s, t, b)
    pairs = zip(method.student_layers, method.teacher_layers, strict=True)
    losses = [gkd_loss(s.features[a], t.features[c], b.y, edges="inter", k=3, power=2) for a, c in pairs]
    torch.testing.assert_close(terms["gkd"], 25.0 * sum(losses) / 3)


def test_gkd_uses_the_label_of_the_larger_mixup_share():
    student, teacher, method = make("gkd", {"edges": "intra", "ce_weight": 0.0})
    perm = torch.arange(8).flip(0)
    small = batch(mix_perm=perm, mix_lambda=0.3)
    s, t = outputs(student, teacher, method, small.x)
    pairs = list(zip(method.student_layers, method.teacher_layers, strict=True))
    expected = sum(gkd_loss(s.features[a], t.features[c], small.y[perm], edges="intra") for a, c in pairs)
    torch.testing.assert_close(method(s, t, small)["gkd"], 25.0 * expected / 3)


def test_sp_sums_and_rkd_averages_layer_pairs():
    layers = {"student_layers": ["stage2", "stage3"], "teacher_layers": ["layer2", "layer3"]}
    b = batch()
    single = {}
    for name in ("sp", "rkd"):
        for pair in range(2):
            one = {k: [v[pair]] for k, v in layers.items()}
            student, teacher, method = make(name, one)
            single[name, pair] = method(*outputs(student, teacher, method, b.x), b)[name]
        student, teacher, method = make(name, layers)
        both = method(*outputs(student, teacher, method, b.x), b)[name]
        total = single[name, 0] + single[name, 1]
        torch.testing.assert_close(both, total if name == "sp" else total / 2)


def test_a_few_steps_of_gkd_alone_reduce_it():
    student, teacher, method = make("gkd", {"ce_weight": 0.0})
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    b, losses = batch(n=16, seed=3), []
    for _ in range(15):
        loss = method(*outputs(student, teacher, method, b.x), b)["gkd"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


# ---- user mistakes -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_unequal_layer_lists_are_refused(name):
    with pytest.raises(ConfigError, match="pairs student and teacher layers"):
        make(name, {"student_layers": ["stage1", "stage2"], "teacher_layers": ["layer1"]})


@pytest.mark.parametrize("name", NAMES)
def test_unknown_layers_and_ensembles_are_refused(name):
    with pytest.raises(ConfigError, match="nope"):
        make(name, {"student_layers": ["nope"], "teacher_layers": ["layer1"]})
    with pytest.raises(ConfigError, match="nope"):  # also without an input shape to probe
        make(name, {"student_layers": ["stage1"], "teacher_layers": ["nope"]}, shape=())
    ensemble = Teacher([resnet8(), resnet8()])
    with pytest.raises(ConfigError, match="ensemble"):
        build_method(name, {}, MethodContext(MODELS.get("cnn")(num_classes=10, in_channels=1), ensemble, 10))


class Scalar(nn.Module):
    """A model with a layer ``score`` whose output is one number per example."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
        self.score = nn.Flatten(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.body(x)
        self.score(logits[:, :1])
        return logits


@pytest.mark.parametrize("name", NAMES)
def test_a_scalar_layer_is_refused_with_its_shape(name):
    with pytest.raises(ConfigError, match=r"'score'.*\(\).*at least a vector"):
        make(name, {"student_layers": ["score"], "teacher_layers": ["flatten"]}, student=Scalar())


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="must be ≥ 0"):
        make("sp", {"weight": -1.0})
    with pytest.raises(ConfigError, match="must be ≥ 0"):
        make("rkd", {"angle_weight": -1.0})
    with pytest.raises(ConfigError, match="power"):
        make("gkd", {"power": 0})
    with pytest.raises(ConfigError, match="k"):
        make("gkd", {"k": 0})
    with pytest.raises(ConfigError, match="intra"):
        make("gkd", {"edges": "within"})
