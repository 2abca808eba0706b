"""TensorBoard and MLflow follow a run (the real packages): the configuration, every epoch's loss terms, learning rate
and validation metrics, the final summary; a resumed run continues its MLflow run."""

import json

import pytest

from kdlab.cli import main

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")
pytest.importorskip("sqlalchemy")

SMALL = ["data=synthetic", "data.val_fraction=0.25", "student.width=4", "independent=false", "--quiet"]


def test_tensorboard_and_mlflow_receive_the_run(tmp_path, synthetic_teacher):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = ["distill", f"teacher={synthetic_teacher}", *SMALL, f"runs_dir={tmp_path}", "name=job"]
    assert main([*args, "log=tensorboard,mlflow", "epochs=2"]) == 0
    run = tmp_path / "job"
    summary = json.loads((run / "summary.json").read_text())
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    expected = {"train/kd", "train/loss", "lr", "val/accuracy", "val/agreement", "test/accuracy", "teacher/accuracy"}
    assert expected <= set(scalars)
    assert [e.step for e in events.Scalars("train/kd")] == [1, 2]
    assert events.Scalars("test/agreement")[-1].value == pytest.approx(summary["student"]["test"]["agreement"])
    assert "config/text_summary" in events.Tags()["tensors"]

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("job")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED" and found.info.run_name == "job"
    assert found.data.params["method.name"] == "kd" and found.data.params["epochs"] == "2"
    history = client.get_metric_history(found.info.run_id, "train.kd")
    assert [m.step for m in history] == [1, 2]
    assert found.data.metrics["test.accuracy"] == pytest.approx(summary["student"]["test"]["accuracy"])


def test_a_resumed_run_continues_its_mlflow_run(tmp_path, synthetic_teacher):
    from mlflow.tracking import MlflowClient

    common = ["distill", f"teacher={synthetic_teacher}", *SMALL, f"runs_dir={tmp_path}", "name=job", "log=mlflow"]
    assert main([*common, "epochs=2"]) == 0
    run = tmp_path / "job"
    (run / "summary.json").unlink()  # as if it had stopped after its last epoch, before the summary
    assert main(["resume", str(run), "--quiet"]) == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("job").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert json.loads((run / "trackers.json").read_text())["mlflow_run_id"] == runs[0].info.run_id
