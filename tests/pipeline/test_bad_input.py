"""Every user mistake is refused while planning: exit code 2, one paragraph naming the bad value and what is allowed,
no traceback — and no run folder, no file and no index row written."""

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdlab.cli import main
from kdlab.core.errors import ConfigError
from kdlab.pipeline.config import load
from kdlab.pipeline.plan import make_plan

SMALL = ["data=synthetic", "data.val_fraction=0.25", "student.width=4", "epochs=1", "--quiet"]


def refused(capsys, tmp_path: Path, *argv: str, needles: tuple[str, ...] = ()) -> str:
    runs = tmp_path / "runs"
    code = main([*argv, f"runs_dir={runs}"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("kdlab: error: ") and "Traceback" not in err and err.strip().count("\n") == 0, err
    for needle in needles:
        assert needle in err, err
    written = [p for p in runs.rglob("*")] if runs.exists() else []
    assert not written, f"planning wrote {written}"
    return err


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("data.eval_batch_size=0", ("data.eval_batch_size must be ≥ 1; got 0",)),
        ("optim.momentum=-1", ("optim.momentum must lie in [0, 1); got -1",)),
        ("optim.weight_decay=-1", ("optim.weight_decay must be ≥ 0; got -1",)),
        ("optim.lr=.inf", ("optim.lr must be a finite number; got inf",)),
        ("optim.lr=.nan", ("optim.lr must be a finite number; got nan",)),
        ("data.train_size=0", ("data.train_size and data.test_size must be ≥ 1",)),
        ("method.temperature=0", ("method.temperature must be > 0; got 0",)),
        ("method.ce_weight=2", ("ce_weight", "must lie in [0, 1]; got 2",)),
        ("method.alpha=0.5", ("method.alpha is now called method.ce_weight", "alpha=A becomes ce_weight=A")),
        ("method.temperature=.inf", ("method.temperature must be a finite number",)),
        ("log=wandb", ("Unknown tracker log='wandb'", "tensorboard, mlflow")),
    ],
)
def test_numbers_and_options_that_used_to_reach_pytorch(capsys, tmp_path, synthetic_teacher, override, needles):
    refused(capsys, tmp_path, "distill", f"teacher={synthetic_teacher}", *SMALL, override, needles=needles)


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (["method=at", "method.student_layers=fc", "method.teacher_layers=fc"], ("'fc'", "[C, H, W] feature maps")),
        (["method=dkd", "data.temperature=2.0"], ("does not distil at per-source temperatures",)),
        (["student=resnet8", "student_init=0.5"], ("needs a student of the teacher's architecture",)),
        (["student_init=0.5"], ("in the teacher and", "the student must have the teacher's architecture")),
        (["student=custom_models:four_outputs"], ("outputs of shape (2, 3)", "has 4 classes")),
        (["student=custom_models:tuple_student", "method=fitnets", "method.student_layers=nope"],
         ("Layer 'nope'",)),
    ],
)  # fmt: skip
def test_checks_that_need_the_models_run_before_any_folder(capsys, tmp_path, synthetic_teacher, overrides, needles):
    refused(capsys, tmp_path, "distill", f"teacher={synthetic_teacher}", *SMALL, *overrides, needles=needles)


def test_a_config_that_is_not_text_and_a_teacher_that_is_not_a_model(capsys, tmp_path, synthetic_teacher):
    binary = tmp_path / "config.yaml"
    binary.write_bytes(b"\xff\xfe\x00epochs: 1\n")
    refused(capsys, tmp_path, "distill", str(binary), needles=("is not UTF-8 text",))
    text = tmp_path / "notes.txt"
    text.write_text("this is not a model\n")
    refused(capsys, tmp_path, "distill", f"teacher={text}", *SMALL, needles=("is not a file kdlab wrote",))


BAD_NUMBERS = {  # a key of the configuration → values it must refuse
    "epochs": st.integers(max_value=0),
    "eval_every": st.integers(max_value=0),
    "data.batch_size": st.integers(max_value=0),
    "data.eval_batch_size": st.integers(max_value=0),
    "data.val_fraction": st.floats(min_value=1.0) | st.floats(max_value=-1e-9),
    "optim.lr": st.floats(max_value=0.0) | st.just(float("inf")) | st.just(float("nan")),
    "optim.momentum": st.floats(min_value=1.0) | st.floats(max_value=-1e-9),
    "optim.weight_decay": st.floats(max_value=-1e-9),
    "optim.warmup_epochs": st.floats(max_value=-1e-9),
    "optim.gamma": st.floats(max_value=0.0),
    "student_init": st.floats(min_value=1.0 + 1e-9) | st.floats(max_value=-1e-9),
    "cache.views": st.integers(max_value=-1),
    "cache.top_k": st.integers(max_value=0),
    "method.temperature": st.floats(max_value=0.0) | st.just(float("inf")),
    "method.ce_weight": st.floats(min_value=1.0 + 1e-9) | st.floats(max_value=-1e-9),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_planner_refuses_generated_bad_values_before_writing_anything(tmp_path_factory, data):
    key = data.draw(st.sampled_from(sorted(BAD_NUMBERS)))
    value = data.draw(BAD_NUMBERS[key])
    runs = tmp_path_factory.mktemp("runs")
    with pytest.raises(ConfigError) as error:
        config = load(None, ["data=synthetic", "teacher=pretrained:fashion_mnist_resnet20", f"runs_dir={runs}",
                             f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}"])  # fmt: skip
        make_plan(config, "distill")
    message = str(error.value)
    assert "\n" not in message and key.split(".")[-1] in message, message
    assert not any(runs.iterdir())


def test_api_values_are_checked_like_the_command_line(tmp_path):
    import kdlab

    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 4, (16,))
    with pytest.raises(ConfigError, match="epochs expects an integer; got '3'"):
        kdlab.train("cnn", (x, y), epochs="3", runs_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"optim\.name must be one of sgd, adamw"):
        kdlab.train("cnn", (x, y), optimizer="rmsprop", runs_dir=tmp_path)
    assert not any(tmp_path.iterdir())
