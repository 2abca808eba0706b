"""End-to-end runs through the CLI and the Python API, on small synthetic data."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

import kdlab
from kdlab.cli import main
from kdlab.core.errors import KdlabError
from kdlab.data import load_dataset
from kdlab.models import MODELS
from kdlab.pipeline import dispatch
from kdlab.pipeline.config import load
from kdlab.runs.index import RunIndex

SMALL = ["data=synthetic", "data.val_fraction=0.25", "student.width=4", "independent=false", "--quiet"]


def test_distill_with_independent_control_writes_everything(capsys, synthetic_teacher, tmp_path):
    code = main(
        [
            "distill",
            f"teacher={synthetic_teacher}",
            *SMALL,
            "epochs=2",
            "independent=true",
            f"runs_dir={tmp_path}",
            "name=job",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    for row in ("teacher", "independent student", "kd student"):
        assert row in out
    group = tmp_path / "job"
    assert json.loads((group / "group.json").read_text())["members"] == [
        {"name": "seed0", "role": "main", "seed": 0, "method": "kd"},
        {"name": "independent-seed0", "role": "independent", "seed": 0, "method": "ce"},
    ]
    summary = json.loads((group / "seed0" / "summary.json").read_text())
    assert set(summary["teacher"]["test"]) == {"accuracy", "nll", "ece"}
    assert set(summary["student"]["test"]) == {"accuracy", "nll", "ece", "agreement", "kl", "tv"}
    assert {"agreement", "kl", "tv"} <= set(summary["student"]["train"])
    assert summary["method"] == {"name": "kd", "temperature": 4.0, "ce_weight": 0.0, "ensemble": "after_mean"}
    assert summary["seed"] == 0 and summary["wall_time_s"] > 0 and summary["versions"]["torch"] == torch.__version__
    for metric in ("accuracy", "agreement"):
        assert 0 <= summary["student"]["test"][metric] <= 1
    history = [json.loads(line) for line in (group / "seed0" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2] and "agreement" in history[-1]["val"]
    rows = RunIndex(tmp_path).rows(filters=["status=finished"])
    assert {r["name"] for r in rows} == {"job/seed0", "job/independent-seed0"}
    assert all(r["group"] == "job" and r["agreement"] is not None for r in rows)
    assert "roles" in json.loads((group / "summary.json").read_text())


def test_seeds_give_mean_and_std_and_a_group_teaches_as_an_ensemble(capsys, tmp_path):
    assert main(["train", *SMALL, "epochs=2", "seeds=0,1", f"runs_dir={tmp_path}", "name=teachers"]) == 0
    assert "±" in capsys.readouterr().out
    aggregate = json.loads((tmp_path / "teachers" / "summary.json").read_text())["roles"]["main"]
    assert aggregate["test"]["accuracy"]["n"] == 2
    assert (
        main(
            [
                "distill",
                f"teacher={tmp_path / 'teachers'}",
                *SMALL,
                "epochs=1",
                f"runs_dir={tmp_path}",
                "name=from-ensemble",
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "from-ensemble" / "summary.json").read_text())
    assert summary["teacher"]["members"] == 2


def test_runs_and_evaluate_commands(capsys, synthetic_teacher, tmp_path):
    main(["distill", f"teacher={synthetic_teacher}", *SMALL, "epochs=1", f"runs_dir={tmp_path}", "name=a"])
    main(["distill", f"teacher={synthetic_teacher}", *SMALL, "epochs=1", "method=ce", f"runs_dir={tmp_path}", "name=b"])
    capsys.readouterr()
    assert main(["runs", "--runs-dir", str(tmp_path), "--filter", "method=ce"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["b"]
    assert main(["evaluate", str(tmp_path / "a"), "--teacher", str(synthetic_teacher), "--data", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert "teacher" in out and "student" in out and "agreement" in out


def test_a_finished_run_is_found_again_and_one_with_other_settings_is_refused(synthetic_teacher, tmp_path):
    """A study re-runs its jobs with resume: a finished run is read back, also when it was saved by an earlier
    version without settings added since (their defaults count); a changed setting is refused by name."""
    args = [f"teacher={synthetic_teacher}", *SMALL[:-1], "epochs=1", f"runs_dir={tmp_path}", "name=job"]
    first = dispatch.run(load(None, args), "distill", progress=False)
    folder = tmp_path / "job"
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    for key in ("fsdp", "teacher_dtype", "cache"):  # as an earlier version wrote it
        del saved[key]
    (folder / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    again = dispatch.run(load(None, args), "distill", folder=folder, resume=True, progress=False)
    assert again.already_finished and again.summaries == first.summaries
    with pytest.raises(KdlabError, match=r"started with another configuration \(differs in: epochs\)"):
        dispatch.run(load(None, [*args, "epochs=2"]), "distill", folder=folder, resume=True, progress=False)
    with pytest.raises(KdlabError, match=r"differs in: cache\)"):  # a missing key set to other than its default
        dispatch.run(load(None, [*args, "cache.top_k=2"]), "distill", folder=folder, resume=True, progress=False)


def test_ctrl_c_saves_and_resume_is_bit_identical(tmp_path, interrupt):
    args = [
        sys.executable,
        "-m",
        "kdlab.cli",
        "train",
        "data=synthetic",
        "data.batch_size=16",
        "student.width=4",
        "epochs=30",
        "--quiet",
        f"runs_dir={tmp_path}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*args, "name=whole"], check=True, capture_output=True, env=env, timeout=300)
    code, err = interrupt([*args, "name=cut"], tmp_path / "cut" / "state.pt", env)
    assert code == 130, err
    assert "Interrupted at epoch" in err and "kdlab resume" in err and "Traceback" not in err
    resumed = subprocess.run(
        [sys.executable, "-m", "kdlab.cli", "resume", str(tmp_path / "cut"), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_python_api_with_tensors_dataset_and_loader(synthetic_teacher, tmp_path):
    data = load_dataset("synthetic", num_classes=4, image_size=8)
    teacher = kdlab.models.files.load_model_file(synthetic_teacher / "model.pt")[0]
    x, y = data.train_x.float() / 255, data.train_y
    test = (data.test_x.float() / 255, data.test_y)
    for name, train in [
        ("tensors", (x, y)),
        ("dataset", TensorDataset(x, y)),
        ("loader", DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)),
    ]:
        student = MODELS.get("cnn")(num_classes=4, in_channels=1, width=4)
        result = kdlab.distill(
            teacher=teacher,
            student=student,
            train=train,
            test=test,
            method="kd",
            temperature=2.0,
            epochs=2,
            runs_dir=tmp_path,
            name=name,
            device="cpu",
        )
        assert result.student is student
        assert set(result.metrics["student"]["test"]) == {"accuracy", "nll", "ece", "agreement", "kl", "tv"}
        assert (tmp_path / name / "summary.json").is_file() and len(result.history) == 2
    metrics = kdlab.evaluate(teacher=teacher, student=result.student, data=test, device="cpu")
    assert metrics["student"]["agreement"] == pytest.approx(result.metrics["student"]["test"]["agreement"])
    ensemble = kdlab.evaluate(teacher=[teacher, teacher], student=teacher, data=test, device="cpu")
    assert ensemble["student"]["agreement"] == 1.0 and ensemble["student"]["kl"] == pytest.approx(0, abs=1e-6)


def test_api_rejects_unknown_hyper_parameters(tmp_path):
    with pytest.raises(kdlab.core.errors.ConfigError, match="Did you mean 'temperature'"):
        kdlab.distill(teacher=None, student="cnn", train="synthetic", method="kd", temprature=3, runs_dir=tmp_path)


def test_main_preset_with_the_shipped_teacher(capsys, fashion_mnist_available, tmp_path):
    code = main(
        [
            "distill",
            "data.train_size=600",
            "data.val_fraction=0.02",
            "data.test_size=1000",
            "epochs=1",
            "--quiet",
            f"runs_dir={tmp_path}",
            "name=main",
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "main" / "seed0" / "summary.json").read_text())
    assert summary["teacher"]["name"] == "pretrained:fashion_mnist_resnet20"
    assert summary["teacher"]["test"]["accuracy"] > 0.9  # the shipped weights are real
    assert "independent student" in capsys.readouterr().out


def test_api_checks_the_student_and_evaluates_named_splits(synthetic_teacher, tmp_path):
    teacher = kdlab.models.files.load_model_file(synthetic_teacher / "model.pt")[0]
    wrong = MODELS.get("cnn")(num_classes=7, in_channels=1, width=4)
    with pytest.raises(kdlab.core.errors.ConfigError, match=r"The student .* outputs of shape \(2, 7\)"):
        kdlab.distill(teacher=teacher, student=wrong, train="synthetic", runs_dir=tmp_path, device="cpu")
    assert not any(tmp_path.iterdir())  # nothing written for a refused run
    val = kdlab.evaluate(teacher=teacher, student=teacher, data="synthetic", split="val", device="cpu")
    test = kdlab.evaluate(teacher=teacher, student=teacher, data="synthetic", device="cpu")
    assert val["student"]["agreement"] == 1.0 and val["teacher"]["accuracy"] != test["teacher"]["accuracy"]
