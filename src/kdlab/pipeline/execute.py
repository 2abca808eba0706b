"""Running a planned job, for any task: prepare the task's data and teachers, check every run's student and method,
claim the folders, train each member, record each in the run index, and summarise the job."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from kdlab.core.errors import ConfigError, Interrupted
from kdlab.pipeline.config import Config, config_hash, resolve, to_mapping
from kdlab.pipeline.member import build, resolve_device, run_member
from kdlab.pipeline.plan import Layout, Plan, label, layout, member_config
from kdlab.pipeline.task import Experiment, Member
from kdlab.reporting.tables import Column
from kdlab.runs import trackers
from kdlab.runs.folder import RunFolder
from kdlab.runs.index import RunIndex, RunRecord
from kdlab.runs.summaries import aggregate, student_key
from kdlab.runs.trackers import Trackers
from kdlab.training import distributed
from kdlab.training.engine import Recipe


@dataclass
class Outcome:
    """What a job did: its folder, every run's summary per role, its table, and the trained models (this process's);
    ``already_finished`` when a resumed job had nothing left to train."""

    folder: Path
    summaries: dict[str, list[dict[str, Any]]]
    table: str
    wall_time_s: float
    columns: list[Column] = field(default_factory=list)
    students: dict[str, list[nn.Module]] = field(default_factory=dict)
    already_finished: bool = False


def _comparable(mapping: dict[str, Any]) -> dict[str, Any]:
    """What must match to resume a run: everything but where it goes, the device and the trackers."""
    return {k: v for k, v in mapping.items() if k not in ("name", "runs_dir", "device", "log", "mlflow_uri")}


def _completed(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved configuration as this version reads it: keys added since it was written take their defaults (one
    that no longer parses is compared as it stands, and so differs)."""
    try:
        return to_mapping(resolve(saved))
    except ConfigError:
        return saved


def _claim_group(lay: Layout, command: str, resume: bool) -> None:
    group = RunFolder(lay.folder)
    mapping = to_mapping(lay.config)
    group.claim(mapping, command=command, resume=resume, comparable=_comparable(mapping), complete=_completed)
    members = [
        {"name": m.folder.path.name, "role": m.role, "seed": m.seed, "method": m.method.name} for m in lay.members
    ]
    group.write_group({"command": command, "members": members})


def _recipe(config: Config) -> Recipe:
    return Recipe(config.epochs, config.optim, 0, config.eval_every, config.precision, config.compile, config.fsdp)


def probe(experiment: Experiment, members: list[Member], recipe: Recipe) -> None:
    """Build every role's student and method once and run the task's checks: a bad layer, option or model stops
    the job here, before any folder or index row exists."""
    seen = set()
    for member in members:
        if member.role not in seen:
            seen.add(member.role)
            build(experiment, member, recipe, prepare=False)


def execute(plan: Plan, *, progress: bool = True) -> Outcome:
    """Run every member of ``plan`` (resuming unfinished ones with ``plan.resume``) and summarise them.

    Under torchrun every rank trains and evaluates; rank 0 chooses the folder (broadcast to the others) and alone
    writes files, the run index and summaries.
    """
    began = time.perf_counter()
    device = distributed.initialize(resolve_device(plan.config.device))  # joins torchrun's group, if launched by it
    # rank 0 picks the (time-stamped) folder and checks it is free; every rank gets its answer, or its error
    lay = distributed.on_main(lambda: layout(plan))
    config, command = lay.config, plan.command
    # read the data and the teachers, build and check every run before any folder is made
    experiment = plan.task.prepare(config, command, device, plan.provided)
    recipe = _recipe(config)
    probe(experiment, lay.members, recipe)
    if lay.grouped:
        distributed.on_main(lambda: _claim_group(lay, command, plan.resume))
    index = RunIndex(lay.root)
    summaries: dict[str, list[dict[str, Any]]] = {}
    students: dict[str, list[nn.Module]] = {}
    trained = 0
    try:
        for member in lay.members:
            student, summary = _run(member, lay, plan, experiment, recipe, index, progress=progress)
            summaries.setdefault(member.role, []).append(summary)
            if student is not None:
                trained += 1
                students.setdefault(member.role, []).append(student)
    except Interrupted as exc:
        raise Interrupted(
            f"{exc} Resume the whole job (every run, then its summary) with: kdlab resume {lay.folder}"
        ) from None
    # the independent student first, the main student last
    order = sorted(summaries, key=lambda r: (r != "independent", r == "control", r == "main"))
    table = experiment.table([(label(r, config, command), summaries[r]) for r in order])
    wall = round(time.perf_counter() - began, 2)
    if lay.grouped and distributed.is_main():
        RunFolder(lay.folder).write_summary(
            {"roles": {r: aggregate(s) for r, s in summaries.items()}, "table": table, "wall_time_s": wall}
        )
    return Outcome(lay.folder, summaries, table, wall, experiment.columns(), students, already_finished=trained == 0)


def _run(
    member: Member,
    lay: Layout,
    plan: Plan,
    experiment: Experiment,
    recipe: Recipe,
    index: RunIndex,
    *,
    progress: bool,
) -> tuple[nn.Module | None, dict[str, Any]]:
    """One member: claim its folder (or find it finished), record it, train it, record its result."""
    mine = member_config(lay.config, member)
    mapping = to_mapping(mine)
    command = "distill" if plan.command == "compare" else plan.command

    def claim() -> dict[str, Any] | None:  # on rank 0; the others learn whether the run is done, and its summary
        member.folder.claim(
            mapping, command=command, resume=plan.resume, comparable=_comparable(mapping), complete=_completed
        )
        return member.folder.finished_summary() if plan.resume else None

    finished = distributed.on_main(claim)
    if finished is not None:
        return None, finished
    main = distributed.is_main()  # the one process that writes the index
    record = RunRecord(
        name=str(member.folder.path.resolve().relative_to(lay.root.resolve())),
        command=command,
        status="running",
        started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        group=lay.config.name if lay.grouped else None,
        config_hash=config_hash(mine),
        method=member.method.name,
        teacher=experiment.teacher_name,
        student=lay.config.student.name,
        dataset=lay.config.data.name,
        seed=member.seed,
        epochs=lay.config.epochs,
    )
    follow = Trackers([])
    if main:
        index.record(record)
        follow = trackers.start(
            lay.config.log, member.folder.path, lay.root, job=lay.config.name or lay.folder.name, config=mapping,
            mlflow_uri=lay.config.mlflow_uri, resume=plan.resume,
        )  # fmt: skip
    try:
        student, summary = run_member(
            member,
            experiment,
            recipe,
            resume=plan.resume,
            progress=progress,
            extra={"name": record.name, "config_hash": record.config_hash},
            trackers=follow,
        )
    except BaseException as exc:  # the index never keeps a run 'running' that is not
        stopped = isinstance(exc, (Interrupted, KeyboardInterrupt))
        if main:
            index.record(replace(record, status="interrupted" if stopped else "failed"))
        follow.fail("KILLED" if stopped else "FAILED")
        raise
    if main:
        index.record(summary_record(record, summary))
    return student, summary


def summary_record(record: RunRecord, summary: dict[str, Any]) -> RunRecord:
    """The index row of a finished run, from its summary."""
    key = student_key(summary)
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

