"""Every user mistake: exit code 2, one paragraph on stderr, no traceback."""

import subprocess
import sys

import pytest

from kdlab.cli import main

SMALL = ["data=synthetic", "data.val_fraction=0.25", "student.width=4", "epochs=1", "--quiet"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_paragraph(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.startswith("kdlab: error: ") and "Traceback" not in err
    assert err.strip().count("\n") == 0, err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("student=resnet9", ["Unknown model 'resnet9'", "Valid models:", "resnet8"]),
        ("method=kdd", ["Unknown method 'kdd'", "Did you mean 'kd'"]),
        ("data=fashoin_mnist", ["Unknown data set 'fashoin_mnist'", "fashion_mnist"]),
        ("optim.lr=abc", ["optim.lr expects a number; got 'abc'"]),
        ("student.widht=3", ["has no option 'widht'", "Did you mean 'width'"]),
        ("method.temperature=hot", ["method.temperature expects a number"]),
        ("data.augment.crop=-", ["data.augment.crop expects an integer"]),
        ("device=tpu", ["Unknown device 'tpu'"]),
    ],
)
def test_bad_names_and_types(capsys, synthetic_teacher, tmp_path, override, needles):
    code, _, err = run(capsys, "distill", f"teacher={synthetic_teacher}", *SMALL, f"runs_dir={tmp_path}", override)
    assert_one_paragraph(code, err, *needles)


def test_unknown_layer_lists_valid_ones(capsys):
    code, _, err = run(capsys, "layers", "resnet8", "--only", "layer1,layer4")
    assert_one_paragraph(code, err, "Layer 'layer4'", "Did you mean 'layer3'", "layer1")


def test_teacher_with_other_class_count(capsys, synthetic_teacher, tmp_path):
    pytest.importorskip("sklearn")
    code, _, err = run(
        capsys, "distill", "data=digits", f"teacher={synthetic_teacher}", "epochs=1", "--quiet", f"runs_dir={tmp_path}"
    )
    assert_one_paragraph(code, err, "outputs of shape (2, 4)", "'digits' has 10 classes")


def test_missing_data_says_how_to_get_it(capsys, synthetic_teacher, tmp_path):
    code, _, err = run(
        capsys, "train", "data=fashion_mnist", f"data.root={tmp_path / 'nowhere'}", "--quiet", f"runs_dir={tmp_path}"
    )
    assert_one_paragraph(code, err, "apt-get install -y dataset-fashion-mnist", "data.root", "data.download=true")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_unreadable_teacher_checkpoint(capsys, synthetic_teacher, tmp_path, damage):
    broken = tmp_path / "teacher.pt"
    data = (synthetic_teacher / "model.pt").read_bytes()
    broken.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a checkpoint" * 10)
    code, _, err = run(capsys, "distill", f"teacher={broken}", *SMALL, f"runs_dir={tmp_path}")
    expected = "unreadable or truncated" if damage == "truncate" else "not a PyTorch file"
    assert_one_paragraph(code, err, expected, str(broken))


def test_missing_teacher_path(capsys, tmp_path):
    code, _, err = run(capsys, "distill", f"teacher={tmp_path / 'none'}", *SMALL, f"runs_dir={tmp_path}")
    assert_one_paragraph(code, err, "is not a model file", "pretrained:")


def test_output_folder_that_holds_another_run(capsys, tmp_path):
    args = ["train", *SMALL, f"runs_dir={tmp_path}", "name=taken"]
    assert run(capsys, *args)[0] == 0
    code, _, err = run(capsys, *args)
    assert_one_paragraph(code, err, "already holds a run", "kdlab resume")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "train", *SMALL, f"runs_dir={tmp_path}", "name=other")
    assert_one_paragraph(code, err, "not empty")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_resume_of_a_folder_that_is_no_run(capsys, tmp_path):
    code, _, err = run(capsys, "resume", str(tmp_path))
    assert_one_paragraph(code, err, "not a kdlab run folder")


def test_train_with_a_teacher_is_refused(capsys, synthetic_teacher, tmp_path):
    code, _, err = run(capsys, "train", f"teacher={synthetic_teacher}", *SMALL, f"runs_dir={tmp_path}")
    assert_one_paragraph(code, err, "remove teacher=")


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "kdlab.cli", "distill", "student=nope", f"runs_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "Unknown model 'nope'" in proc.stderr


def test_list_and_layers(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "resnet32x4" in out and "kd" in out and "fashion_mnist" in out
    code, out, _ = run(capsys, "layers", "resnet20", "--only", "layer1,layer3")
    assert code == 0 and "16x32x32" in out and "64x8x8" in out


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        (
            ["method=at", "method.student_layers=flatten", "method.teacher_layers=flatten"],
            ["'at' cannot use the student layer 'flatten'", "shape (16,)", "[C, H, W]"],
        ),
        (["method=fitnets", "method.student_layers=stage9"], ["Layer 'stage9'", "Did you mean"]),
        (
            ["method=sp", "method.student_layers=stage1,stage2", "method.teacher_layers=stage3"],
            ["pairs student and teacher layers one to one"],
        ),
        (["method=kd+at", "method.temperature=2"], ["give each part's options under its name"]),
    ],
)
def test_layer_mistakes_name_the_layer_and_what_the_method_needs(capsys, synthetic_teacher, tmp_path, options, needles):
    code, _, err = run(capsys, "distill", f"teacher={synthetic_teacher}", *SMALL, f"runs_dir={tmp_path}", *options)
    assert_one_paragraph(code, err, *needles)


def test_cache_estimate_prints_bytes_per_token_and_a_corpus_size(capsys):
    assert main(["cache", "estimate", "--top-k", "128", "--tokens", "1000000", "--vocab", "32000"]) == 0
    out = capsys.readouterr().out
    assert "772 bytes a trained token" in out and "736.24 MiB" in out and "165.8×" in out  # 772e6 / 2**20
    assert main(["cache", "estimate", "--top-k", "0"]) == 2
    assert "--top-k must be ≥ 1" in capsys.readouterr().err
