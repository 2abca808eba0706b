"""Planning a job: which runs it holds (every seed × role), their typed hyper-parameters, where they go — every rule
that can be checked from the configuration alone, before any data is read or any folder made."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kdlab.core.errors import ConfigError
from kdlab.methods import check_task, method_params, needs_teacher
from kdlab.pipeline.config import Config, MethodConfig
from kdlab.pipeline.task import Command, Member, Provided, Task, task_of
from kdlab.runs import trackers
from kdlab.runs.folder import RunFolder, index_root, unique_name

DEFAULT_COMPARE = ("kd", "dkd", "fitnets", "at", "sp", "rkd", "pkt", "gkd", "crd")


@dataclass
class Plan:
    """A checked job: its configuration, command, task and, where the Python API gave them, objects."""

    config: Config
    command: Command
    task: Task
    provided: Provided | None = None
    folder: Path | None = None  # None: runs_dir/name, a fresh time-stamped name by default
    resume: bool = False
    params: dict[str, Any] = field(default_factory=dict)  # each role's typed hyper-parameters


@dataclass
class Layout:
    """Where a job's runs go: the job's folder, the runs root holding the index, and its members."""

    config: Config  # with the name the job was given
    folder: Path
    root: Path
    grouped: bool
    members: list[Member]


def compared_methods(config: Config) -> list[tuple[str, MethodConfig]]:
    """(label, method) pairs ``kdlab compare`` runs. ``methods`` entries are names or mappings
    ``{name: METHOD, label: SHOWN_AS, option: value}`` (a label tells two settings of one method apart)."""
    out = []
    for entry in config.methods or list(DEFAULT_COMPARE):
        if isinstance(entry, str):
            out.append((entry, MethodConfig(entry, {})))
        elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
            options = {k: v for k, v in entry.items() if k not in ("name", "label")}
            out.append((str(entry.get("label", entry["name"])), MethodConfig(entry["name"], options)))
        else:
            raise ConfigError(f"methods entries are method names or {{name: METHOD, option: value}}; got {entry!r}.")
    labels = [label for label, _ in out]
    if len(set(labels)) != len(labels) or "independent" in labels:
        raise ConfigError(
            f"methods lists a method twice (or names one 'independent'): {labels}; "
            "give repeated methods different labels, e.g. {name: rkd, label: rkd-d, angle_weight: 0}."
        )
    return out


def roles(config: Config, command: Command) -> list[tuple[str, MethodConfig]]:
    """(role, method) pairs: the trained model(s) and, where asked, the independent-student control."""
    if command == "compare":
        return [*compared_methods(config), ("independent", MethodConfig("ce", {}))]
    pairs = [("main", config.method)]
    if command == "distill" and config.independent:
        pairs.append(("independent", MethodConfig("ce", {})))
    if command == "distill" and config.control_teacher:
        pairs.append(("control", config.method))
    return pairs


def label(role: str, config: Config, command: Command) -> str:
    """How a role is called in the job's table."""
    if role == "independent":
        return "independent student"
    if role == "control":
        return f"control: {config.method.name} from teacher t′"
    if role == "main":
        return f"{config.method.name} student" if command == "distill" else "model"
    return role


def member_name(role: str, seed: int) -> str:
    """The sub-folder of a grouped run: ``seed0`` for the main role, ``independent-seed0`` for the others."""
    return f"seed{seed}" if role == "main" else f"{role}-seed{seed}"


def member_config(config: Config, member: Member) -> Config:
    """The configuration of one member run (its seed and method; the control learns from t′)."""
    mine = replace(config, seeds=[member.seed], method=member.method, independent=False, methods=[], control_teacher=[])
    if member.role == "control":  # the control learns from t′ (and is judged against t)
        mine = replace(mine, teacher=config.control_teacher)
    return mine


def check(config: Config, command: Command, task: Task, has_teacher: bool) -> dict[str, Any]:
    """The rules of the task, of the command and of every role's method; returns each role's typed
    hyper-parameters (typed now: a bad option stops here)."""
    task.check(config, command)
    trackers.check(config.log)
    for key, value in (("fsdp", config.fsdp), ("teacher_dtype", config.teacher_dtype)):
        if value and not getattr(task, "shards_models", False):
            raise ConfigError(
                f"{key} shards or narrows large models and serves language-model data; {task.name} trains its "
                f"student under torchrun with DDP and loads teachers as saved. Remove {key}."
            )
    params = {}
    for role, method in roles(config, command):
        params[role] = method_params(method.name, method.params)
        check_task(method.name, task.name)
    if command == "train" and has_teacher:
        raise ConfigError("kdlab train trains a model from labels alone; remove teacher=... or use kdlab distill.")
    if command == "train" and needs_teacher(config.method.name):
        raise ConfigError(
            f"kdlab train learns without a teacher (method=ce, or ekd for a depth-switchable model); got "
            f"method={config.method.name}, which needs one. Distillation from a teacher runs with kdlab distill."
        )
    if command != "train" and not has_teacher:
        raise ConfigError(f"kdlab {command} needs a teacher: teacher=pretrained:NAME, a run folder or a list of them.")
    if config.control_teacher and command != "distill":
        raise ConfigError(f"control_teacher (an independent teacher t′) belongs to kdlab distill, not kdlab {command}.")
    if config.student_init is not None and command == "train":
        raise ConfigError("student_init interpolates from a teacher; it belongs to kdlab distill, not kdlab train.")
    return params


def make_plan(
    config: Config,
    command: Command,
    *,
    provided: Provided | None = None,
    folder: Path | None = None,
    resume: bool = False,
) -> Plan:
    """The checked plan of a job (nothing is read or written yet)."""
    task = task_of(config, provided)
    has_teacher = bool(config.teacher) or bool(provided and provided.teachers)
    params = check(config, command, task, has_teacher)
    return Plan(config, command, task, provided, folder, resume, params)


def layout(plan: Plan) -> Layout:
    """Where the runs go (``runs_dir/name``, a fresh time-stamped name by default, or the plan's folder), the index
    root and the members; a new job needs a free folder."""
    config, command = plan.config, plan.command
    if plan.folder is None:
        root = Path(config.runs_dir)
        name = config.name or unique_name(root, f"{command}-{config.method.name}-{config.student.name}")
        folder = root / name
    else:
        folder = plan.folder
        root, name = index_root(folder), folder.name
    config = replace(config, name=name)
    pairs = roles(config, command)
    grouped = len(config.seeds) > 1 or len(pairs) > 1
    members = []
    for role, method in pairs:
        for seed in config.seeds:
            where = RunFolder(folder / member_name(role, seed) if grouped else folder)
            members.append(Member(where, seed, method, plan.params[role], role, label=f"{method.name} seed {seed}"))
    if not plan.resume:
        RunFolder(folder).check_free()
    return Layout(config, folder, root, grouped, members)
