"""Rules the Hugging Face tasks (text classification, causal language modelling) share while planning: one teacher to
distil from, none of the image task's student controls, and (text classification) one process."""

from __future__ import annotations

from kdlab.core.errors import ConfigError
from kdlab.pipeline.config import Config
from kdlab.pipeline.task import Command
from kdlab.training import distributed


def check_one_process_job(
    config: Config, command: Command, data: str, *, init_hint: str = "", torchrun: bool = False
) -> None:
    """Refuse ``control_teacher``, ``student_init``, (for distillation) an ensemble of teachers and, unless
    ``torchrun``, several processes for a job on ``data`` (e.g. "text data"); ``init_hint`` says how this task
    starts a student from its teacher."""
    if distributed.launched() and not torchrun:
        raise ConfigError(
            f"{config.data.name} is {data}; these runs train in one process so far, but torchrun started "
            f"{distributed.world_size()}. Run it without torchrun (kdlab {command} ...)."
        )
    for key, bad in (("control_teacher", config.control_teacher), ("student_init", config.student_init)):
        if bad:
            raise ConfigError(f"{key} is not available for {data} ({config.data.name}).{init_hint}")
    if command != "train" and len(config.teacher) > 1:
        raise ConfigError(f"Distillation on {data} takes one teacher (hf:PATH or a run folder); got {config.teacher}.")
