"""What trying kdlab as a new user found: model outputs of any shape, vector inputs, DataLoaders, failed runs in
the index, one result shape, resuming a whole job, logs without a terminal, ``kdlab evaluate`` and ``kdlab list``."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import kdlab
from kdlab.cli import main
from kdlab.core.errors import ConfigError
from kdlab.runs.index import RunIndex

SMALL = ["data=synthetic", "data.val_fraction=0.25", "student.width=4", "epochs=1", "--quiet"]


class Returns(nn.Module):
    """A classifier of flat vectors whose forward returns its logits wrapped as ``kind`` says."""

    def __init__(self, kind: str, features: int = 64, classes: int = 5) -> None:
        super().__init__()
        self.kind, self.net = kind, nn.Sequential(nn.Linear(features, 32), nn.ReLU(), nn.Linear(32, classes))

    def forward(self, x: torch.Tensor):
        logits = self.net(x)
        if self.kind == "tuple":
            return logits, x
        if self.kind == "dict":
            return {"logits": logits, "hidden": x}
        if self.kind == "object":
            return SimpleNamespace(logits=logits, loss=None)
        return logits


def vectors(n: int = 96, features: int = 64, classes: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randn(n, features, generator=g) + torch.nn.functional.one_hot(y % features, features).float() * 3
    return x, y


@pytest.mark.parametrize("kind", ["tuple", "dict", "object"])
def test_any_output_shape_and_flat_vectors_distil(tmp_path, kind):
    torch.manual_seed(0)
    train, test = vectors(), vectors(seed=1)
    common = {"epochs": 4, "lr": 0.1, "batch_size": 16, "runs_dir": tmp_path}
    teacher = kdlab.train(Returns(kind), train, test, name="t", **common).student
    result = kdlab.distill(teacher, Returns(kind), train, test, name="s", **common)
    figures = result.metrics["student"]["test"]
    assert 0.0 <= figures["agreement"] <= 1.0 and figures["accuracy"] > 0.3
    assert set(result.metrics) == {"teacher", "student"}


def test_train_and_distill_return_one_shape(tmp_path):
    train = vectors()
    trained = kdlab.train(Returns("plain"), train, train, epochs=1, runs_dir=tmp_path, name="a")
    assert set(trained.metrics) == {"student"} and "test" in trained.metrics["student"]
    assert set(json.loads((trained.run_dir / "summary.json").read_text())) >= {"student", "method", "seed"}


def test_a_data_loader_keeps_its_classes_and_batches(tmp_path):
    x, y = vectors(n=200, classes=100)
    order = torch.argsort(y)  # the first batch holds only the smallest labels
    loader = DataLoader(TensorDataset(x[order], y[order]), batch_size=20)
    teacher = Returns("plain", classes=100)
    result = kdlab.distill(teacher, Returns("plain", classes=100), loader, loader, epochs=1, runs_dir=tmp_path)
    config = (result.run_dir / "config.yaml").read_text()
    assert "batch_size: 20" in config
    reason = result.summary["teacher_source"]["reason"]
    assert "DataLoader" in reason and "augmentation" not in reason
    with pytest.raises(ConfigError, match="batch_size=64, but the training DataLoader makes batches of 20"):
        kdlab.distill(teacher, Returns("plain", classes=100), loader, epochs=1, batch_size=64, runs_dir=tmp_path)


def test_a_run_that_fails_in_training_is_recorded_as_failed(tmp_path, synthetic_teacher):
    with pytest.raises(RuntimeError, match="opposite"):
        main(["distill", f"teacher={synthetic_teacher}", *SMALL, "independent=false", f"runs_dir={tmp_path}",
              "student=custom_models:fails_in_training", "name=broken"])  # fmt: skip
    rows = RunIndex(tmp_path).rows()
    assert [r["status"] for r in rows] == ["failed"]


def test_ctrl_c_in_a_job_suggests_the_command_that_finishes_all_of_it(tmp_path, synthetic_teacher, interrupt):
    args = [sys.executable, "-m", "kdlab.cli", "distill", f"teacher={synthetic_teacher}", "data=synthetic",
            "data.batch_size=16", "student.width=4", "epochs=30", "seeds=0,1", "--quiet",
            f"runs_dir={tmp_path}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code, err = interrupt([*args, "name=cut"], tmp_path / "cut" / "independent-seed0" / "state.pt", env)
    assert code == 130, err
    assert f"kdlab resume {tmp_path / 'cut'}" in err and "Traceback" not in err
    resumed = subprocess.run([sys.executable, "-m", "kdlab.cli", "resume", str(tmp_path / "cut"), "--quiet"],
                             capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    group = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert set(group["roles"]) == {"main", "independent"}
    assert all(r["status"] == "finished" for r in RunIndex(tmp_path).rows())


def test_without_a_terminal_progress_is_a_line_per_epoch(tmp_path, synthetic_teacher):
    out = subprocess.run(
        [sys.executable, "-m", "kdlab.cli", "distill", f"teacher={synthetic_teacher}", "data=synthetic",
         "data.batch_size=8", "student.width=4", "epochs=3", "independent=false", f"runs_dir={tmp_path}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if ": step " in line]
    assert 3 <= len(lines) <= 6 and "\r" not in out.stderr, out.stderr
    assert lines[-1].startswith("kd seed 0: step ") and "(100 %)" in lines[-1]


def test_evaluate_prints_percentages_and_names_the_student(capsys, tmp_path, synthetic_teacher):
    assert main(["distill", f"teacher={synthetic_teacher}", *SMALL, "independent=false", f"runs_dir={tmp_path}",
                 "name=a"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "a"), "--teacher", str(synthetic_teacher), "--data", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert "accuracy %" in out and "agreement %" in out and "kl" in out
    student_row = next(line for line in out.splitlines() if line.startswith("student"))
    assert float(student_row.split()[1]) > 1.0  # a percentage, not a fraction
    missing = str(tmp_path / "nothing")
    assert main(["evaluate", missing, "--teacher", str(synthetic_teacher), "--data", "synthetic"]) == 2
    err = capsys.readouterr().err
    assert "The student" in err and "nothing" in err and "teacher" not in err.split("is not")[0].lower()


def test_list_groups_everything_by_task(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    image, tagging = out.index("image_classification:"), out.index("sequence_labelling:")
    assert "kd" in out[image:tagging] and "structural_kd" in out[tagging:]
    assert main(["list", "dependency_parsing"]) == 0
    out = capsys.readouterr().out
    assert "biaffine" in out and "turkish_deps" in out and "fashion_mnist" not in out
    assert main(["list", "sequence"]) == 2
    assert "kdlab list sequence_labelling" in capsys.readouterr().err
