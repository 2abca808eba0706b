"""Experiment trackers that follow a run: TensorBoard event files and MLflow (a local SQLite tracking store, no server
needed). They receive the configuration, every epoch's loss terms, learning rate and validation metrics, and the final
summary; the run folder and the run index stay the source of truth. ``log=tensorboard,mlflow`` turns them on; their
packages are the ``tracking`` extra (``pip install -e ".[tracking]"``)."""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from kdlab.core.errors import ConfigError
from kdlab.core.files import write_json

TRACKERS_FILE = "trackers.json"  # what a resumed run needs to continue the same tracker runs (MLflow's run id)
NEEDS = {"tensorboard": ("tensorboard",), "mlflow": ("mlflow", "sqlalchemy", "alembic")}


class Tracker(Protocol):
    """What the pipeline tells a tracker about one run."""

    def epoch(self, record: dict[str, Any]) -> None: ...

    def finish(self, summary: dict[str, Any]) -> None: ...

    def close(self, status: str) -> None: ...


def check(names: Sequence[str]) -> None:
    """Known tracker names whose packages are installed (a ConfigError naming the extra otherwise)."""
    for name in names:
        if name not in NEEDS:
            raise ConfigError(f"Unknown tracker log={name!r}; valid trackers: {', '.join(NEEDS)}.")
        missing = [m for m in NEEDS[name] if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(
                f"log={name} needs the package(s) {', '.join(missing)}: install the tracking extra, "
                'pip install -e ".[tracking]" (or pip install ' + " ".join(missing) + ")."
            )


def flat(mapping: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested mappings as (dotted key, value) pairs."""
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flat(value, f"{name}.")
        else:
            yield name, value


def numbers(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    return {k: float(v) for k, v in flat(mapping, prefix) if isinstance(v, (int, float)) and not isinstance(v, bool)}


def epoch_figures(record: dict[str, Any]) -> dict[str, float]:
    """One epoch's loss terms (``train/…``), learning rate and validation metrics (``val/…``)."""
    out = {f"train/{k}": v for k, v in numbers(record.get("train", {})).items()}
    out.update({f"val/{k}": v for k, v in numbers(record.get("val", {})).items()})
    out["lr"] = float(record["lr"])
    return out


def summary_figures(summary: dict[str, Any]) -> dict[str, float]:
    """The final figures of a run: the student's per split, the teacher's test figures."""
    out = {f"{split}/{k}": v for split in ("test", "train", "train_views")
           for k, v in numbers(summary.get("student", {}).get(split, {})).items()}  # fmt: skip
    out.update({f"teacher/{k}": v for k, v in numbers(summary.get("teacher", {}).get("test", {})).items()})
    return out


class TensorBoard:
    """Event files in the run folder's ``tensorboard/`` (``tensorboard --logdir runs``)."""

    def __init__(self, folder: Path, config: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder / "tensorboard"))
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in flat(config)))

    def epoch(self, record: dict[str, Any]) -> None:
        for key, value in epoch_figures(record).items():
            self.writer.add_scalar(key, value, record["epoch"])
        self.writer.flush()

    def finish(self, summary: dict[str, Any]) -> None:
        for key, value in summary_figures(summary).items():
            self.writer.add_scalar(key, value, summary.get("epochs", 0))

    def close(self, status: str) -> None:
        self.writer.close()


class MLflow:
    """A run in an MLflow tracking store (default ``sqlite:///RUNS_ROOT/mlflow.db``; ``mlflow_uri`` to change it),
    in the experiment named after the job; a resumed run continues its MLflow run."""

    def __init__(self, uri: str, experiment: str, name: str, config: Mapping[str, Any], run_id: str | None) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        if run_id is None:
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
            run_id = self.client.create_run(experiment_id, run_name=name).info.run_id
            params = [Param(k, str(v)[:500]) for k, v in flat(config)]
            for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(run_id, params=params[start : start + 100])
        self.run_id = run_id

    def _log(self, figures: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(k.replace("/", "."), v, stamp, step) for k, v in figures.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def epoch(self, record: dict[str, Any]) -> None:
        self._log(epoch_figures(record), record["epoch"])

    def finish(self, summary: dict[str, Any]) -> None:
        self._log(summary_figures(summary), summary.get("epochs", 0))

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)


class Trackers:
    """The trackers of one run, told together (a no-op without any)."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def on_epoch(self, write: Callable[[list[dict[str, Any]]], None]) -> Callable[[list[dict[str, Any]]], None]:
        """``write`` (the run folder's metrics file), then every tracker, after each epoch."""

        def both(history: list[dict[str, Any]]) -> None:
            write(history)
            for tracker in self.trackers:
                tracker.epoch(history[-1])

        return both

    def finish(self, summary: dict[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.finish(summary)
            tracker.close("FINISHED")

    def fail(self, status: str = "FAILED") -> None:
        for tracker in self.trackers:
            tracker.close(status)


def start(
    names: Sequence[str],
    folder: Path,
    root: Path,
    *,
    job: str,
    config: Mapping[str, Any],
    mlflow_uri: str | None,
    resume: bool,
) -> Trackers:
    """The trackers of the run in ``folder`` (of the job ``job`` under the runs ``root``), continuing those of a
    resumed run."""
    state_path = folder / TRACKERS_FILE
    state = json.loads(state_path.read_text()) if resume and state_path.is_file() else {}
    out: list[Tracker] = []
    for name in names:
        if name == "tensorboard":
            out.append(TensorBoard(folder, config))
        elif name == "mlflow":
            uri = mlflow_uri or f"sqlite:///{(root / 'mlflow.db').resolve()}"
            tracker = MLflow(uri, job, folder.name, config, state.get("mlflow_run_id"))
            state["mlflow_run_id"] = tracker.run_id
            out.append(tracker)
    if state:
        write_json(state_path, state)
    return Trackers(out)
