"""Rules the Hugging Face tasks (text classification, causal language modelling) share while planning: one process
(no torchrun yet), one teacher to distil from, and none of the image task's student controls."""

from __future__ import annotations

from kdlab.core.errors import ConfigError
from kdlab.pipeline.config import Config
from kdlab.pipeline.task import Command
from kdlab.training import distributed


def check_one_process_job(config: Config, command: Command, data: str, *, init_hint: str = "") -> None:
    """Refuse torchrun, ``control_teacher``, ``student_init`` and (for distillation) an ensemble of teachers for a
    job on ``data`` (e.g. "text data"); ``init_hint`` says how this task starts a student from its teacher."""
    if distributed.launched():
        raise ConfigError(
            f"{config.data.name} is {data}; these runs train in one process so far, but torchrun started "
            f"{distributed.world_size()}. Run it without torchrun (kdlab {command} ...)."
        )
    for key, bad in (("control_teacher", config.control_teacher), ("student_init", config.student_init)):
        if bad:
            raise ConfigError(f"{key} is not available for {data} ({config.data.name}).{init_hint}")
    if command != "train" and len(config.teacher) > 1:
        raise ConfigError(f"Distillation on {data} takes one teacher (hf:PATH or a run folder); got {config.teacher}.")
