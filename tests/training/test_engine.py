import itertools
import math
import shutil

import pytest
import torch
from torch import nn

from kdlab.cache.select import online as online_teacher
from kdlab.core import files as checkpoint
from kdlab.core.errors import Interrupted, TrainingStopped
from kdlab.data import load_dataset
from kdlab.data.loader import TensorLoader
from kdlab.data.policies import Augment
from kdlab.methods import MethodContext, build_method
from kdlab.models import MODELS
from kdlab.training.engine import Engine, Recipe
from kdlab.training.optim import OptimConfig, lr_factor
from kdlab.training.teachers import Teacher

DATA = load_dataset("synthetic", num_classes=4, image_size=8, train_size=192, test_size=32)


def make_engine(path, *, epochs=3, hooks=(), method="kd", seed=0, init=0) -> Engine:
    torch.manual_seed(100)
    teacher = Teacher(MODELS.get("cnn")(num_classes=4, in_channels=1, width=4))
    torch.manual_seed(init)
    student = MODELS.get("cnn")(num_classes=4, in_channels=1, width=4)
    params = {"temperature": 4.0, "ce_weight": 0.3} if method == "kd" else {}
    m = build_method(method, params, MethodContext(student, teacher, 4))
    loader = TensorLoader(DATA.train_x, DATA.train_y, 32, shuffle=True, augment=Augment(2, True, 0.5), seed=seed)
    engine = Engine(
        student=student,
        method=m,
        train=loader,
        teacher=online_teacher(teacher),
        hooks=list(hooks),
        recipe=Recipe(epochs, OptimConfig(lr=0.1, warmup_epochs=1), seed),
        state_path=path / "state.pt",
        progress=False,
    )
    engine.teacher_module = teacher
    return engine


def stop_at(epoch: int, step: int):
    def hook(engine: Engine, e: int, s: int) -> None:
        if (e, s) == (epoch, step):
            engine.request_stop()

    return hook


@pytest.mark.parametrize("where", [(1, 2), (0, 5)])  # mid-epoch, and the last step of an epoch
def test_resume_gives_bit_identical_weights(tmp_path, where):
    reference = make_engine(tmp_path / "a")
    history = reference.fit()
    interrupted = make_engine(tmp_path / "b", hooks=[stop_at(*where)])
    with pytest.raises(Interrupted, match=f"epoch {where[0] + 1}, step {where[1] + 1}"):
        interrupted.fit()
    resumed = make_engine(tmp_path / "b", init=7)  # different init: everything must come from the checkpoint
    resumed_history = resumed.fit(resume=True)
    for key, value in reference.student.state_dict().items():
        assert torch.equal(value, resumed.student.state_dict()[key]), key
    assert [h["train"] for h in resumed_history] == [h["train"] for h in history]


def test_checkpoint_after_every_epoch_holds_the_state(tmp_path):
    engine = make_engine(tmp_path, epochs=2)
    engine.fit()
    state = checkpoint.load(tmp_path / "state.pt")
    assert state["epoch"] == 2 and state["step"] == 0 and len(state["history"]) == 2
    assert all(torch.equal(v, engine.student.state_dict()[k]) for k, v in state["student"].items())


class Exploding(nn.Module):
    """A method whose loss turns to NaN at global step 9 (epoch 2, step 4 with 6 steps per epoch)."""

    needs_teacher = False
    student_layers = teacher_layers = ()

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, student, teacher, batch):
        self.calls += 1
        loss = nn.functional.cross_entropy(student.logits, batch.y)
        return {"ce": loss * math.nan if self.calls >= 10 else loss}


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    engine = make_engine(tmp_path, epochs=3)
    engine.method = Exploding()
    with pytest.raises(TrainingStopped) as err:
        engine.fit()
    assert "epoch 2, step 4" in str(err.value) and "ce" in str(err.value)
    state = checkpoint.load(tmp_path / "state.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["student"].values() if v.is_floating_point())


def test_teacher_receives_no_gradient_and_does_not_change(tmp_path):
    engine = make_engine(tmp_path, epochs=1)
    teacher = engine.teacher_module
    before = {k: v.clone() for k, v in teacher.state_dict().items()}  # weights and BN statistics
    student_before = {k: v.clone() for k, v in engine.student.state_dict().items()}
    engine.fit()
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in teacher.parameters())
    assert not all(torch.equal(v, engine.student.state_dict()[k]) for k, v in student_before.items())


def test_learning_rate_schedules():
    cfg = OptimConfig(lr=0.1, warmup_epochs=1, schedule="cosine", min_lr=0.001)
    factors = [lr_factor(s, cfg=cfg, steps_per_epoch=10, epochs=5) for s in range(50)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[-1] == pytest.approx(0.01, abs=2e-3)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    step = OptimConfig(lr=0.1, schedule="step", milestones=[2, 4], gamma=0.1)
    assert [lr_factor(s * 10, cfg=step, steps_per_epoch=10, epochs=6) for s in range(6)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )


@pytest.mark.parametrize("method", ["fitnets", "crd"])
def test_methods_with_trainable_parts_resume_bit_identically(tmp_path, method):
    def engine_for(path, init, hooks=()):
        torch.manual_seed(100)
        teacher = Teacher(MODELS.get("resnet8")(num_classes=4, in_channels=1))
        torch.manual_seed(init)
        student = MODELS.get("cnn")(num_classes=4, in_channels=1, width=4)
        ctx = MethodContext(student, teacher, 4, input_shape=(1, 8, 8), num_train=len(DATA.train_x), epochs=2)
        m = build_method(method, {}, ctx)
        teacher.tap(m.teacher_layers)
        loader = TensorLoader(DATA.train_x, DATA.train_y, 32, shuffle=True, seed=0)
        return Engine(
            student=student,
            method=m,
            train=loader,
            teacher=online_teacher(teacher),
            hooks=list(hooks),
            recipe=Recipe(2, OptimConfig(lr=0.05), 0),
            state_path=path / "state.pt",
            progress=False,
        )

    whole = engine_for(tmp_path / "a", 0)
    whole.fit()
    cut = engine_for(tmp_path / "b", 0, [stop_at(1, 1)])
    with pytest.raises(Interrupted):
        cut.fit()
    resumed = engine_for(tmp_path / "b", 5)
    resumed.fit(resume=True)
    for mine, theirs in ((whole.student, resumed.student), (whole.method, resumed.method)):
        for key, value in mine.state_dict().items():
            assert torch.equal(value, theirs.state_dict()[key]), key


def _fitnets_engine(path, **recipe):
    torch.manual_seed(0)
    teacher = Teacher(MODELS.get("cnn")(num_classes=4, in_channels=1, width=4))
    torch.manual_seed(1)
    student = MODELS.get("cnn")(num_classes=4, in_channels=1, width=4)
    layers = {"student_layers": ["stage2"], "teacher_layers": ["stage2"]}
    method = build_method("fitnets", layers, MethodContext(student, teacher, 4, input_shape=(1, 8, 8)))
    teacher.tap(method.teacher_layers)
    return Engine(
        student=student,
        method=method,
        train=TensorLoader(DATA.train_x, DATA.train_y, 32),
        teacher=online_teacher(teacher),
        recipe=Recipe(1, OptimConfig(lr=0.1), 0, **recipe),
        state_path=path / "state.pt",
        progress=False,
    )


def test_bf16_autocast_keeps_every_loss_term_in_float32(tmp_path):
    engine = _fitnets_engine(tmp_path, precision="bf16")
    reference = _fitnets_engine(tmp_path, precision="fp32")
    batch = next(engine.train.epoch(0))
    _, terms = engine.step(batch)
    _, exact = reference.step(batch)
    assert all(t.dtype == torch.float32 for t in terms.values())
    for name in exact:  # bf16 forward passes, float32 losses: close to the float32 run, not equal
        assert 0 < abs(terms[name].item() - exact[name].item()) < 0.05 * abs(exact[name].item())


@pytest.mark.skipif(not shutil.which("cc"), reason="torch.compile (inductor) needs a C compiler on CPU")
def test_compiled_student_keeps_its_feature_taps_and_its_losses(tmp_path):
    eager, compiled = _fitnets_engine(tmp_path / "a"), _fitnets_engine(tmp_path / "b", compile=True)
    for batch in itertools.islice(eager.train.epoch(0), 2):
        _, a = eager.step(batch)
        _, b = compiled.step(batch)
        assert set(a) == set(b) == {"fitnets", "ce"}  # the hint term needs the tapped stage2 features
        for name in a:
            assert torch.allclose(a[name], b[name], rtol=1e-4), name
