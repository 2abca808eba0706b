"""``kdlab train`` / ``kdlab distill`` from a configuration: every seed and role, folders, index, table."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from kdlab.cache.select import check_settings
from kdlab.core.errors import ConfigError, Interrupted, KdlabError
from kdlab.data import DATASETS
from kdlab.methods import method_params, needs_teacher
from kdlab.models.factory import build_model, check_spec, check_teacher, teacher_members
from kdlab.pipeline.config import Config, MethodConfig, config_hash, to_mapping
from kdlab.pipeline.member import Member, Shared, resolve_device, run_member
from kdlab.runs.folder import RunFolder, index_root, unique_name
from kdlab.runs.index import RunIndex, RunRecord
from kdlab.runs.summaries import aggregate, comparison_table, depth_table
from kdlab.tasks.image.sources import config_sources
from kdlab.training import distributed
from kdlab.training.engine import Recipe
from kdlab.training.teachers import Teacher

Command = Literal["train", "distill", "compare"]
DEFAULT_COMPARE = ("kd", "dkd", "fitnets", "at", "sp", "rkd", "pkt", "gkd", "crd")


@dataclass
class Outcome:
    folder: Path
    summaries: dict[str, list[dict[str, Any]]]
    table: str
    wall_time_s: float


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


def check(config: Config, command: Command) -> None:
    """Every name and option is valid — before any data is read."""
    DATASETS.get(config.data.name)
    check_spec(config.student, "student")
    for _, method in roles(config, command):
        method_params(method.name, method.params)
    if command == "train" and config.teacher:
        raise ConfigError("kdlab train trains a model from labels alone; remove teacher=... or use kdlab distill.")
    if command == "train" and needs_teacher(config.method.name):
        raise ConfigError(
            f"kdlab train learns without a teacher (method=ce, or ekd for a depth-switchable model); got "
            f"method={config.method.name}, which needs one. Distillation from a teacher runs with kdlab distill."
        )
    if command != "train" and not config.teacher:
        raise ConfigError(f"kdlab {command} needs a teacher: teacher=pretrained:NAME, a run folder or a list of them.")
    if config.control_teacher and command != "distill":
        raise ConfigError(f"control_teacher (an independent teacher t′) belongs to kdlab distill, not kdlab {command}.")
    if config.student_init is not None and command == "train":
        raise ConfigError("student_init interpolates from a teacher; it belongs to kdlab distill, not kdlab train.")


def member_name(role: str, seed: int) -> str:
    """The sub-folder of a grouped run: ``seed0`` for the main role, ``independent-seed0`` for the others."""
    return f"seed{seed}" if role == "main" else f"{role}-seed{seed}"


def plan(config: Config, command: Command, folder: Path) -> tuple[bool, list[Member]]:
    """The runs to do; several (seeds × roles) go in sub-folders of a group folder."""
    pairs = roles(config, command)
    grouped = len(config.seeds) > 1 or len(pairs) > 1
    members = []
    for role, method in pairs:
        for seed in config.seeds:
            sub = member_name(role, seed)
            folder_of = RunFolder(folder / sub if grouped else folder)
            members.append(Member(folder_of, seed, method, role, label=f"{method.name} seed {seed}"))
    return grouped, members


def label(role: str, config: Config, command: Command) -> str:
    if role == "independent":
        return "independent student"
    if role == "control":
        return f"control: {config.method.name} from teacher t′"
    if role == "main":
        return f"{config.method.name} student" if command == "distill" else "model"
    return role


def member_config(config: Config, member: Member) -> Config:
    mine = replace(config, seeds=[member.seed], method=member.method, independent=False, methods=[], control_teacher=[])
    if member.role == "control":  # the control learns from t′ (and is judged against t)
        mine = replace(mine, teacher=config.control_teacher)
    return mine


def layout(
    config: Config, command: Command, folder: Path | None, resume: bool
) -> tuple[Config, Path, Path, bool, list[Member]]:
    """Where the runs go (``runs_dir/name``, a fresh time-stamped name by default, or ``folder``), the index root,
    and the members; a new run needs a free folder."""
    if folder is None:
        root = Path(config.runs_dir)
        name = config.name or unique_name(root, f"{command}-{config.method.name}-{config.student.name}")
        folder = root / name
    else:
        root, name = index_root(folder), folder.name
    config = replace(config, name=name)
    grouped, members = plan(config, command, folder)
    if not resume:
        RunFolder(folder).check_free()
    return config, folder, root, grouped, members


def _comparable(mapping: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k not in ("name", "runs_dir", "device")}


def _claim_group(config: Config, command: Command, folder: Path, members: list[Member], resume: bool) -> None:
    group = RunFolder(folder)
    mapping = to_mapping(config)
    group.claim(mapping, command=command, resume=resume, comparable=_comparable(mapping))
    members_record = [
        {"name": m.folder.path.name, "role": m.role, "seed": m.seed, "method": m.method.name} for m in members
    ]
    group.write_group({"command": command, "members": members_record})


def execute(
    config: Config,
    command: Command,
    *,
    folder: Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Outcome:
    """Run every member of ``config`` (resuming unfinished ones with ``resume``) and summarise them.

    The runs go to ``runs_dir/name`` (a fresh time-stamped name by default), or to ``folder``. Under torchrun
    every rank trains and evaluates; rank 0 chooses the folder (broadcast to the others) and alone writes files,
    the run index and summaries.
    """
    from kdlab.data.sentences.corpora import is_sequence_data

    if is_sequence_data(config.data.name):  # taggers and parsers: kdlab.tasks.structured.experiment
        if distributed.launched():
            raise ConfigError(
                f"{config.data.name} is a sequence data set (taggers and parsers); those train in one process, but "
                f"torchrun started {distributed.world_size()}. Run it without torchrun (kdlab {command} ...); "
                "torchrun trains on the image data sets."
            )
        from kdlab.tasks.structured.experiment import execute_sequence

        return execute_sequence(config, command, folder=folder, resume=resume, progress=progress)
    check(config, command)
    began = time.perf_counter()
    device = distributed.initialize(resolve_device(config.device))  # joins torchrun's group, if launched by it
    # rank 0 picks the (time-stamped) folder and checks it is free; every rank gets its answer, or its error
    config, folder, root, grouped, members = distributed.on_main(lambda: layout(config, command, folder, resume))
    # read the data and the teacher before any folder is made: a failed start leaves nothing behind
    views = config.cache.views if config.teacher_cache and command != "train" else 0
    sources = config_sources(config.data, device, views, config.cache.view_seed)
    check_settings(config.cache, sources.info.num_classes)
    teacher = control = None
    if command != "train":
        teacher = Teacher(teacher_members(config.teacher, sources.info))
        check_teacher(teacher.to(device), sources.info, device)
    if command == "distill" and config.control_teacher:
        control = Teacher(teacher_members(config.control_teacher, sources.info))
        check_teacher(control.to(device), sources.info, device)
    if grouped:
        distributed.on_main(lambda: _claim_group(config, command, folder, members, resume))
    shared = Shared(sources, device, teacher, ", ".join(map(str, config.teacher)) or None, cache=config.cache)
    control_shared = (
        None
        if control is None
        else Shared(sources, device, control, ", ".join(map(str, config.control_teacher)), cache=config.cache)
    )
    index = RunIndex(root)
    summaries: dict[str, list[dict[str, Any]]] = {}
    for member in members:
        summaries.setdefault(member.role, []).append(
            _run(
                member,
                config,
                command,
                control_shared if member.role == "control" and control_shared is not None else shared,
                index,
                root,
                group=config.name if grouped else None,
                resume=resume,
                progress=progress,
                reference=shared if member.role == "control" else None,
            )
        )
    # the independent student first, the main student last
    order = sorted(summaries, key=lambda r: (r != "independent", r == "control", r == "main"))
    labels = [(label(r, config, command), summaries[r]) for r in order]
    table = comparison_table(labels, shared.teacher_metrics() if teacher is not None else None)
    depths = depth_table(labels)
    table = f"{table}\n\nper depth (sub-nets of one set of weights):\n{depths}" if depths else table
    wall = round(time.perf_counter() - began, 2)
    if grouped and distributed.is_main():
        RunFolder(folder).write_summary(
            {"roles": {r: aggregate(s) for r, s in summaries.items()}, "table": table, "wall_time_s": wall}
        )
    return Outcome(folder, summaries, table, wall)


def _run(
    member: Member,
    config: Config,
    command: Command,
    shared: Shared,
    index: RunIndex,
    root: Path,
    *,
    group: str | None,
    resume: bool,
    progress: bool,
    reference: Shared | None = None,
) -> dict[str, Any]:
    mine = member_config(config, member)
    mapping = to_mapping(mine)
    member_command = "distill" if command == "compare" else command

    def claim() -> dict[str, Any] | None:  # on rank 0; the others learn whether the run is done, and its summary
        member.folder.claim(mapping, command=member_command, resume=resume, comparable=_comparable(mapping))
        return member.folder.read_summary() if resume and member.folder.finished else None

    finished = distributed.on_main(claim)
    if finished is not None:
        return finished
    main = distributed.is_main()  # the one process that writes the index
    record = RunRecord(
        name=str(member.folder.path.resolve().relative_to(root.resolve())),
        command=member_command,
        status="running",
        started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        group=group,
        config_hash=config_hash(mine),
        method=member.method.name,
        teacher=shared.teacher_name,
        student=config.student.name,
        dataset=config.data.name,
        seed=member.seed,
        epochs=config.epochs,
    )
    if main:
        index.record(record)
    try:
        _, summary = run_member(
            member,
            shared,
            make_student=lambda: build_model(config.student, shared.sources.info),
            recipe=Recipe(
                config.epochs, config.optim, member.seed, config.eval_every, config.precision, config.compile
            ),
            resume=resume,
            progress=progress,
            teacher_cache=config.teacher_cache,
            spec=config.student,
            extra={"name": record.name, "config_hash": record.config_hash},
            reference=reference,
            init_lambda=config.student_init if member.method.name != "ce" else None,
        )
    except KdlabError as exc:
        if main:
            index.record(replace(record, status="interrupted" if isinstance(exc, Interrupted) else "failed"))
        raise
    if main:
        index.record(summary_record(record, summary))
    return summary


def summary_record(record: RunRecord, summary: dict[str, Any]) -> RunRecord:
    key = "student" if "student" in summary else "model"
    test, train = summary[key].get("test", {}), summary[key].get("train", {})
    return replace(
        record,
        status="finished",
        finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        wall_time_s=summary["wall_time_s"],
        accuracy=test.get("accuracy"),
        nll=test.get("nll"),
        ece=test.get("ece"),
        agreement=test.get("agreement"),
        kl=test.get("kl"),
        tv=test.get("tv"),
        train_agreement=train.get("agreement"),
        teacher_accuracy=summary.get("teacher", {}).get("test", {}).get("accuracy"),
    )
