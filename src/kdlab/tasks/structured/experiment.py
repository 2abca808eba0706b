"""``kdlab train`` / ``kdlab distill`` on sequence data sets: the same run folders, index, engine and resume as
image runs, with taggers and parsers, structured methods and structured metrics."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.core.errors import ConfigError, Interrupted, KdlabError
from kdlab.core.typecheck import build_dataclass
from kdlab.data.sentences.corpora import SequenceSplits, load_splits
from kdlab.data.sentences.encoding import Encoded, SentenceLoader, Vocabulary, encode, encode_inputs
from kdlab.methods.structured import SEQUENCE_METHODS
from kdlab.models.factory import resolve_model_path
from kdlab.pipeline.config import Config, config_hash, to_mapping
from kdlab.pipeline.member import Member, resolve_device, versions
from kdlab.reporting.table import format_table, mean_std
from kdlab.runs.folder import RunFolder
from kdlab.runs.index import RunIndex, RunRecord
from kdlab.runs.summaries import aggregate
from kdlab.tasks.structured.evaluate import fidelity, predict, task_metrics
from kdlab.tasks.structured.labels import LabelTable, SequenceContext, kind_of
from kdlab.tasks.structured.models import (
    SequenceTeacher,
    build_sequence_model,
    load_sequence_model,
    save_sequence_model,
)
from kdlab.training.engine import Engine, Recipe
from kdlab.training.predict import eval_mode


@dataclass
class SequenceShared:
    """What the runs of one experiment share: data, vocabulary, label set and teacher."""

    config: Config
    splits: SequenceSplits
    vocab: Vocabulary
    train: Encoded
    val: Encoded | None
    test: Encoded | None
    table: LabelTable | None
    device: torch.device
    teacher: SequenceTeacher | None = None
    teacher_name: str | None = None
    teacher_test: dict[str, float] | None = None

    @property
    def task(self) -> str:
        return self.splits.task

    def loader(self, data: Encoded, seed: int = 0, shuffle: bool = False) -> SentenceLoader:
        size = self.config.data.batch_size if shuffle else self.config.data.eval_batch_size
        return SentenceLoader(data, size, device=self.device, shuffle=shuffle, seed=seed)


def prepare(config: Config, command: str) -> SequenceShared:
    """Read the data, build the vocabulary and load the teacher — before any folder is made."""
    for key, bad in (("control_teacher", config.control_teacher), ("student_init", config.student_init is not None)):
        if bad:
            raise ConfigError(f"{key} is not available for sequence data sets ({config.data.name}).")
    if command != "train" and len(config.teacher) != 1:
        raise ConfigError(
            f"Sequence distillation takes one teacher (a run folder or model file); got {config.teacher}."
        )
    splits, labelled = load_splits(config.data)
    options = config.data.options
    min_count, max_chars = int(options.get("min_count", 2)), int(options.get("max_chars", 16))
    vocab = Vocabulary.build(
        splits.train, splits.task, min_count=min_count, max_chars=max_chars, inventory=splits.inventory
    )
    table = LabelTable.build(splits.inventory, vocab.relations) if splits.task == "parsing" else None
    device = resolve_device(config.device)
    shared = SequenceShared(
        config, splits, vocab, encode(splits.train, vocab, splits.task, labelled),
        encode(splits.val, vocab, splits.task) if splits.val else None,
        encode(splits.test, vocab, splits.task) if splits.test else None, table, device,
    )  # fmt: skip
    if command != "train":
        loaded = load_sequence_model(resolve_model_path(str(config.teacher[0]))[0])
        if loaded.task != splits.task:
            raise ConfigError(
                f"The teacher was trained for {loaded.task} but {config.data.name} is {splits.task} data."
            )
        shared.teacher = SequenceTeacher(loaded, vocab, config.tag_map, device)
        shared.teacher_name = str(config.teacher[0])
        for data in (shared.train, shared.val, shared.test):  # the teacher reads every sentence in its own vocabulary
            if data is not None:
                data.teacher_x = encode_inputs(data.sentences, loaded.vocab)
    return shared


def _check_method(name: str, values: dict[str, Any], command: str) -> Any:
    cls = SEQUENCE_METHODS.get(name)
    params = build_dataclass(cls.Params, values, "method")
    if command == "train" and cls.needs_teacher:
        raise ConfigError(f"kdlab train learns from labels (method=ce); {name} needs a teacher: use kdlab distill.")
    if command != "train" and not cls.needs_teacher and name != "ce":
        raise ConfigError(f"Method {name!r} does not use a teacher.")
    return params


def evaluate(model: nn.Module, kind: str, shared: SequenceShared, data: Encoded) -> dict[str, float]:
    predictors = {"s": (lambda b: model(b.x), kind)}
    if shared.teacher is not None:
        predictors["t"] = (shared.teacher, shared.teacher.kind)
    with eval_mode(model):
        decoded, gold = predict(predictors, shared.loader(data).epoch(0), shared.table)
    out = task_metrics(decoded["s"], gold, shared.vocab.labels)
    if "t" in decoded:
        out.update(fidelity(decoded["s"], decoded["t"]))
    return out


def teacher_metrics(shared: SequenceShared) -> dict[str, float]:
    if shared.teacher_test is None and shared.teacher is not None and shared.test is not None:
        decoded, gold = predict({"t": (shared.teacher, shared.teacher.kind)}, shared.loader(shared.test).epoch(0))
        shared.teacher_test = task_metrics(decoded["t"], gold, shared.vocab.labels)
    return shared.teacher_test or {}


def run_member(member: Member, shared: SequenceShared, *, resume: bool, progress: bool, extra: dict) -> dict:
    """Train one tagger/parser (from labels, or distilled) and write its folder; returns its summary."""
    config, started = shared.config, time.perf_counter()
    torch.manual_seed(member.seed)
    student = build_sequence_model(config.student, shared.vocab, shared.splits.task, shared.table).to(shared.device)
    kind = kind_of(student, shared.splits.task)
    cls = SEQUENCE_METHODS.get(member.method.name)
    params = _check_method(member.method.name, member.method.params, "distill" if shared.teacher else "train")
    teacher_kind = shared.teacher.kind if shared.teacher is not None and cls.needs_teacher else "none"
    method = cls(params, SequenceContext(shared.splits.task, kind, teacher_kind, shared.table)).to(shared.device)
    if method.needs_teacher and shared.teacher is None:
        raise ConfigError(f"Method {member.method.name!r} needs a teacher; give teacher=RUN (or use method=ce).")
    if shared.table is not None:
        method.context.table = shared.table.to(shared.device)
    engine = Engine(
        student=student, method=method, train=shared.loader(shared.train, member.seed, shuffle=True),
        recipe=Recipe(config.epochs, config.optim, member.seed, config.eval_every, config.precision, config.compile),
        state_path=member.folder.state_path,
        teacher=shared.teacher if method.needs_teacher else None,
        evaluate=(lambda: evaluate(student, kind, shared, shared.val)) if shared.val is not None else None,
        on_epoch=member.folder.write_metrics, progress=progress, label=member.label,
    )  # fmt: skip
    fit_started = time.perf_counter()
    history = engine.fit(resume=resume)
    fit_ended = time.perf_counter()
    key = "student" if shared.teacher is not None else "model"
    result: dict[str, Any] = {key: {"name": config.student.name, "kind": kind,
                                    "parameters": sum(p.numel() for p in student.parameters())}}  # fmt: skip
    if shared.test is not None:
        result[key]["test"] = evaluate(student, kind, shared, shared.test)
    result[key]["train"] = evaluate(student, kind, shared, shared.train)
    if shared.teacher is not None:
        teacher = {"name": shared.teacher_name, "kind": shared.teacher.kind, "test": teacher_metrics(shared)}
        result = {"teacher": teacher, **result}
    training_time = history[-1]["time_s"] if history else 0.0
    summary = {
        **result,
        "method": {"name": member.method.name, "case": method.case, **vars(params)},
        "role": member.role, "seed": member.seed, "epochs": config.epochs, "data": config.data.name,
        "task": shared.splits.task, "labelled": int(sum(shared.train.y.flatten(1)[:, 0] >= 0)),
        "train_sentences": len(shared.train), "device": str(shared.device),
        "wall_time_s": round(training_time + (fit_started - started) + (time.perf_counter() - fit_ended), 2),
        "train_time_s": training_time, "versions": versions(), **extra,
    }  # fmt: skip
    save_sequence_model(member.folder.model_path, student, config.student, shared.vocab, shared.splits.task,
                        shared.table, result[key].get("test", {}))  # fmt: skip
    member.folder.write_summary(summary)
    return summary


COLUMNS = {
    "tagging": [("accuracy %", "accuracy"), ("span F1 %", "f1"), ("agreement %", "agreement"),
                ("sentence agr. %", "sentence_agreement"), ("token KL", "kl")],
    "parsing": [("UAS %", "uas"), ("LAS %", "las"), ("head agr. %", "agreement"),
                ("labelled agr. %", "labelled_agreement"), ("sentence agr. %", "sentence_agreement")],
}  # fmt: skip


def table(rows: list[tuple[str, list[dict]]], task: str, teacher: dict[str, float] | None) -> str:
    """One row for the teacher and one per labelled group of runs (mean ± std over seeds)."""
    columns = COLUMNS[task]
    out = []
    if teacher:
        out.append(["teacher", *[mean_std([teacher[m]], scale=100.0) if m in teacher else None for _, m in columns]])
    for label, summaries in rows:
        cells = []
        for _, metric in columns:
            vals = [s[k]["test"][metric] for s in summaries for k in ("student", "model") if metric in
                    s.get(k, {}).get("test", {})]  # fmt: skip
            cells.append(mean_std(vals, scale=1.0 if metric == "kl" else 100.0, digits=4 if metric == "kl" else 2))
        out.append([label, *cells])
    return format_table(["model", *[c for c, _ in columns]], out)


def execute_sequence(config: Config, command: str, *, folder: Path | None, resume: bool, progress: bool) -> Any:
    """``kdlab train``/``distill``/``compare`` for sequence data (see :func:`kdlab.pipeline.execute.execute`)."""
    from kdlab.pipeline.execute import Outcome, _comparable, label, layout, member_config, roles, summary_record

    for _, method in roles(config, command):  # type: ignore[arg-type]
        _check_method(method.name, method.params, "train" if command == "train" else "distill")
    began = time.perf_counter()
    config, folder, root, grouped, members = layout(config, command, folder, resume)  # type: ignore[arg-type]
    shared = prepare(config, command)
    if grouped:
        mapping = to_mapping(config)
        RunFolder(folder).claim(mapping, command=command, resume=resume, comparable=_comparable(mapping))
        listing = [
            {"name": m.folder.path.name, "role": m.role, "seed": m.seed, "method": m.method.name} for m in members
        ]
        RunFolder(folder).write_group({"command": command, "members": listing})
    index, summaries = RunIndex(root), {}
    for member in members:
        mine = member_config(config, member)
        mapping = to_mapping(mine)
        member_command = "distill" if command == "compare" else command
        member.folder.claim(mapping, command=member_command, resume=resume, comparable=_comparable(mapping))
        if resume and member.folder.finished:
            summaries.setdefault(member.role, []).append(member.folder.read_summary())
            continue
        record = RunRecord(
            name=str(member.folder.path.resolve().relative_to(root.resolve())), command=member_command,
            status="running", started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            group=config.name if grouped else None, config_hash=config_hash(mine), method=member.method.name,
            teacher=shared.teacher_name, student=config.student.name, dataset=config.data.name, seed=member.seed,
            epochs=config.epochs,
        )  # fmt: skip
        index.record(record)
        try:
            summary = run_member(member, shared, resume=resume, progress=progress,
                                 extra={"name": record.name, "config_hash": record.config_hash})  # fmt: skip
        except KdlabError as exc:
            index.record(replace(record, status="interrupted" if isinstance(exc, Interrupted) else "failed"))
            raise
        index.record(summary_record(record, summary))
        summaries.setdefault(member.role, []).append(summary)
    order = sorted(summaries, key=lambda r: (r != "independent", r == "control", r == "main"))
    rows = [(label(r, config, command), summaries[r]) for r in order]  # type: ignore[arg-type]
    text = table(rows, shared.splits.task, teacher_metrics(shared) if shared.teacher else None)
    wall = round(time.perf_counter() - began, 2)
    if grouped:
        RunFolder(folder).write_summary(
            {"roles": {r: aggregate(s) for r, s in summaries.items()}, "table": text, "wall_time_s": wall}
        )
    return Outcome(folder, summaries, text, wall)
