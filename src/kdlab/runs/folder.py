"""Run folders: ``runs/<name>/`` with config.yaml, metrics.jsonl, summary.json, state.pt and model.pt.

Every file is written atomically. A folder that already holds a run is never overwritten: starting
a new run there is an error; resuming checks that the configuration is the same.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from kdlab.core.errors import RunFolderError
from kdlab.core.files import write_atomic, write_json

CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, RUN_FILE = "config.yaml", "metrics.jsonl", "summary.json", "run.json"
STATE_FILE, MODEL_FILE, GROUP_FILE = "state.pt", "model.pt", "group.json"


def timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def unique_name(root: Path, stem: str) -> str:
    """``stem-<time>``, with a suffix if that folder exists already."""
    name, k = f"{stem}-{timestamp()}", 2
    while (root / name).exists():
        name, k = f"{stem}-{timestamp()}-{k}", k + 1
    return name


@dataclass
class RunFolder:
    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def state_path(self) -> Path:
        return self.path / STATE_FILE

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    def finished_summary(self) -> dict[str, Any] | None:
        """The summary of a finished run, else None (a damaged summary counts as unfinished: resuming re-evaluates
        the run from its last checkpoint and writes the summary again)."""
        try:
            return self.read_summary()
        except RunFolderError:
            return None

    def _read(self, name: str, parse: Callable[[str], Any], what: str) -> Any:
        path = self.path / name
        if not path.is_file():
            raise RunFolderError(f"{self.path} is not a kdlab run folder (no {name}); give a folder under runs/.")
        try:
            return parse(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RunFolderError(
                f"{path} ({what}) is damaged or truncated ({reason}). Restore it from a copy, or start the run "
                "again under another name."
            ) from None

    def claim(
        self,
        mapping: dict[str, Any],
        *,
        command: str,
        resume: bool,
        comparable: dict[str, Any] | None = None,
        complete: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """Create the folder for a new run, or check it holds this very run when resuming.

        ``comparable`` is the part of the configuration that must match on resume (default: all of it); ``complete``
        fills the saved configuration's missing keys with their defaults before the comparison (a run saved by an
        earlier version, before a setting existed, resumes when this one leaves that setting at its default).
        """
        config = self.path / CONFIG_FILE
        if not resume:
            self.check_free()
        if config.is_file():
            old = self.read_config()
            if complete is not None:
                old = complete(old)
            mine = comparable if comparable is not None else mapping
            theirs = {k: old.get(k) for k in mine}
            if json.dumps(theirs, sort_keys=True, default=str) != json.dumps(mine, sort_keys=True, default=str):
                changed = sorted(
                    k for k in mine if json.dumps(mine[k], default=str) != json.dumps(theirs[k], default=str)
                )
                raise RunFolderError(
                    f"The run in {self.path} was started with another configuration (differs in: "
                    f"{', '.join(changed)}); it cannot be resumed with this one. Resume with "
                    f"`kdlab resume {self.path}` (it reads the saved config.yaml) or choose another name."
                )
            return
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / RUN_FILE, {"command": command, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        write_atomic(config, yaml.safe_dump(mapping, sort_keys=False).encode())

    def command(self) -> Literal["train", "distill", "compare"]:
        """``train``, ``distill`` or ``compare``: what started this run."""
        record = self._read(RUN_FILE, json.loads, "the run's record of the command that started it")
        if not isinstance(record, dict) or record.get("command") not in ("train", "distill", "compare"):
            raise RunFolderError(
                f"{self.path / RUN_FILE} does not name the command that started the run (train, distill or compare); "
                "it is damaged. Restore it from a copy, or start the run again under another name."
            )
        return record["command"]

    def check_free(self) -> None:
        """A new run may start here: the folder is absent or empty."""
        if (self.path / CONFIG_FILE).is_file():
            raise RunFolderError(
                f"The output folder {self.path} already holds a run. Choose another name (name=...), "
                f"resume it with `kdlab resume {self.path}`, or delete the folder to start over."
            )
        if self.path.exists() and any(self.path.iterdir()):
            raise RunFolderError(
                f"The output folder {self.path} is not empty but holds no kdlab run; choose another name or "
                "runs_dir, or empty the folder."
            )

    def read_config(self) -> dict[str, Any]:
        """The run's saved configuration (a RunFolderError when it is missing or damaged)."""
        config = self._read(CONFIG_FILE, lambda text: yaml.safe_load(text) or {}, "the run's configuration")
        if not isinstance(config, dict):
            raise RunFolderError(f"{self.path / CONFIG_FILE} holds a {type(config).__name__}, not a configuration.")
        return config

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl from the full history (one JSON object per epoch) — atomically."""
        text = "".join(json.dumps(record, default=str) + "\n" for record in history)
        write_atomic(self.path / METRICS_FILE, text.encode())

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.path / SUMMARY_FILE, summary)

    def read_summary(self) -> dict[str, Any]:
        """The run's summary (a RunFolderError when it is missing or damaged)."""
        summary = self._read(SUMMARY_FILE, json.loads, "the run's summary")
        if not isinstance(summary, dict):
            raise RunFolderError(f"{self.path / SUMMARY_FILE} holds a {type(summary).__name__}, not a summary.")
        return summary

    def write_group(self, record: dict[str, Any]) -> None:
        write_json(self.path / GROUP_FILE, record)


def index_root(folder: Path) -> Path:
    """The runs root of ``folder``: the nearest ancestor holding the run index, else its parent."""
    from kdlab.runs.index import INDEX_FILE

    for parent in Path(folder).resolve().parents:
        if (parent / INDEX_FILE).is_file():
            return parent
    return Path(folder).resolve().parent
