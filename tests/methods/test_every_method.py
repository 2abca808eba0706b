"""Every registered image method takes one finite training step on a zoo pair; only the student learns (the
structured methods: tests/structured/test_sequence_runs.py); every method serves registered tasks."""

import dataclasses

import pytest
import torch

from kdlab.core.batch import Batch
from kdlab.core.outputs import ModelOutput
from kdlab.methods import METHODS, MethodContext, build_method
from kdlab.models import MODELS
from kdlab.pipeline.task import tasks
from kdlab.training.taps import Taps
from kdlab.training.teachers import Teacher


def test_every_method_serves_registered_tasks_and_every_task_has_methods():
    known = set(tasks().names())
    for name in METHODS.names():
        served = METHODS.entry(name).tasks
        assert served is None or set(served) <= known, name
    assert all(METHODS.names(task) for task in known)


@pytest.mark.parametrize("name", METHODS.names("image_classification"))
def test_one_finite_step_and_no_gradient_to_the_teacher(name):
    torch.manual_seed(0)
    teacher = Teacher(MODELS.get("resnet8")(num_classes=10, in_channels=1))
    teacher.members[0].eval()
    if name == "ekd":  # trains the sub-nets of a depth-switchable student
        student = MODELS.get("ddnn_resnet")(num_classes=10, in_channels=1, depths=(8, 14), width=4, stem_width=4)
    else:
        student = MODELS.get("cnn")(num_classes=10, in_channels=1, width=4)
    entry = METHODS.get(name)
    assert dataclasses.is_dataclass(entry.params) and entry.summary
    context = MethodContext(student, teacher, 10, input_shape=(1, 28, 28), num_train=64, epochs=2)
    method = build_method(name, {}, context)
    teacher.tap(method.teacher_layers)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    batch = Batch(x=x, y=y, index=torch.arange(8) * 7)
    taps = Taps(student, method.student_layers) if method.student_layers else None
    student_out = ModelOutput(student(x), taps.collect() if taps else {})
    teacher_out = teacher(x) if method.needs_teacher else None
    terms = method(student_out, teacher_out, batch)
    assert terms and all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    before = {k: v.clone() for k, v in student.state_dict().items()}
    optimizer = torch.optim.SGD([*student.parameters(), *method.parameters()], lr=0.1)
    sum(terms.values()).backward()
    optimizer.step()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(not torch.equal(v, student.state_dict()[k]) for k, v in before.items())
