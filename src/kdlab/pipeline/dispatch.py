"""The one dispatcher from a command to its task's execution: ``train``, ``distill`` and ``compare`` (plan, then
execute; ``resume`` is ``run`` on a folder's saved configuration) and ``evaluate`` (the task's evaluation of saved
models). The CLI and the Python API both come through here."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdlab.pipeline.config import Config, resolve
from kdlab.pipeline.execute import Outcome, execute
from kdlab.pipeline.plan import make_plan
from kdlab.pipeline.task import Command, Provided, task_of


def run(
    config: Config,
    command: Command,
    *,
    provided: Provided | None = None,
    folder: Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Outcome:
    """Plan ``command`` on ``config`` (every check before anything is read or written) and execute it."""
    plan = make_plan(config, command, provided=provided, folder=folder, resume=resume)
    return execute(plan, progress=progress)


def evaluate(
    student: str,
    teachers: Sequence[str],
    data: dict[str, Any],
    *,
    split: str,
    device: str,
    cka: Sequence[tuple[str, str]] = (),
) -> dict[str, dict[str, Any]]:
    """A saved student against saved teacher(s) on a split of the data set ``data`` (``{"name": ..., **options}``),
    by the data set's task."""
    config = resolve({"data": data, "device": device, "teacher": list(teachers)})
    return task_of(config).evaluate(student, list(teachers), config, split, cka)
