"""The job commands: ``train``, ``distill``, ``compare``, ``resume`` and ``evaluate`` — each a thin call into the one
dispatcher, :mod:`kdlab.pipeline.dispatch`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdlab.core.errors import ConfigError

if TYPE_CHECKING:  # the CLI imports the library lazily, so that `kdlab --help` starts fast
    from kdlab.pipeline.config import Config
    from kdlab.pipeline.execute import Outcome

MAIN_PRESET = "fashion_mnist_kd"
COMPARE_PRESET = "fashion_mnist_compare"


def main_process() -> bool:
    """Rank 0 under torchrun (the process that prints results), else True."""
    return os.environ.get("RANK", "0") == "0"


def _preset(source: str | None, overrides: Sequence[str], preset: str) -> str | None:
    """The config to start from: the given one; else the preset, unless the overrides name a data set of another
    task than the preset's (whose models and methods the preset does not fit)."""
    if source is not None:
        return source
    names = [item.split("=", 1)[1] for item in overrides if item.startswith(("data.name=", "data="))]
    if not names:
        return preset
    from kdlab.data import DATASETS
    from kdlab.pipeline import config as cfg

    if names[-1] not in DATASETS:
        return preset  # the preset's run reports the unknown name
    preset_data = cfg.load_mapping(preset)["data"]
    same = DATASETS.entry(preset_data["name"]).task_for({}) == DATASETS.entry(names[-1]).task_for({})
    return preset if same else None


def _split(items: Sequence[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG] key=value ...`` → (config or None, overrides)."""
    if items and "=" not in items[0]:
        return items[0], list(items[1:])
    return None, list(items)


def _announce(c: Config, command: str, quiet: bool) -> None:
    if quiet or not main_process():
        return
    teacher = f" · teacher {', '.join(map(str, c.teacher))}" if c.teacher else ""
    options = ", ".join(f"{k}={v}" for k, v in c.student.options.items())
    if command.endswith("compare"):
        from kdlab.pipeline.plan import compared_methods

        methods = f"methods {', '.join(label for label, _ in compared_methods(c))} and the independent student"
    else:
        methods = f"method {c.method.name}"
    print(
        f"kdlab {command}: {c.data.name}{teacher} · student {c.student.name}{f'({options})' if options else ''}"
        f" · {methods} · {c.epochs} epochs · seeds {','.join(map(str, c.seeds))}",
        file=sys.stderr,
    )


def _report(outcome: Outcome) -> None:
    if not main_process():
        return
    print(outcome.table)
    print(f"\nwall time {outcome.wall_time_s:.1f} s · results in {outcome.folder}")


def _config(args: argparse.Namespace, command: str) -> Config:
    from kdlab.pipeline import config as cfg

    source, overrides = _split(args.items)
    if command != "train":
        source = _preset(source, overrides, MAIN_PRESET if command == "distill" else COMPARE_PRESET)
    raw = cfg.apply_overrides(cfg.load_mapping(source), overrides)
    if command == "train":
        raw.setdefault("method", {"name": "ce"})
    return cfg.resolve(raw)


def cmd_run(args: argparse.Namespace) -> int:
    """``kdlab train`` and ``kdlab distill``."""
    from kdlab.pipeline.dispatch import run

    config = _config(args, args.command)
    _announce(config, args.command, args.quiet)
    _report(run(config, args.command, progress=not args.quiet))
    return 0


def _compare_files(outcome: Outcome, config: Config) -> None:
    from kdlab.reporting import compare

    setup: dict[str, Any] = {
        "data": config.data.name,
        "student": {"name": config.student.name, **config.student.options},
        "epochs": config.epochs,
        "seeds": config.seeds,
    }
    line = (
        f"{config.data.name} · teacher {', '.join(map(str, config.teacher))} · student {config.student.name} "
        f"{config.student.options or ''} · {config.epochs} epochs · seeds {', '.join(map(str, config.seeds))}"
    )
    print(compare.write(outcome.folder, outcome.summaries, outcome.columns, setup, line))
    print(f"\nwall time {outcome.wall_time_s:.1f} s · compare.json, compare.md, compare.png in {outcome.folder}")


def cmd_compare(args: argparse.Namespace) -> int:
    from kdlab.pipeline.dispatch import run

    config = _config(args, "compare")
    _announce(config, "compare", args.quiet)
    outcome = run(config, "compare", progress=not args.quiet)
    if main_process():  # the files and the table are rank 0's to write
        _compare_files(outcome, config)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from kdlab.pipeline import config as cfg
    from kdlab.pipeline.dispatch import run
    from kdlab.runs.folder import RunFolder

    folder = RunFolder(Path(args.run))
    command = folder.command()
    config = cfg.resolve(folder.read_config())
    _announce(config, f"resume {command}", args.quiet)
    outcome = run(config, command, folder=folder.path, resume=True, progress=not args.quiet)
    if outcome.already_finished and main_process():
        print(f"The run in {folder.path} had already finished; nothing was trained. Its results:", file=sys.stderr)
    if command == "compare" and main_process():
        _compare_files(outcome, config)
    else:
        _report(outcome)
    return 0


# the figures that are not fractions of examples or tokens (shown as they are)
NOT_PERCENT = ("nll", "kl", "tv", "perplexity", "tokens", "sample_teacher_logp", "sample_student_logp", "sample_tokens")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from kdlab.pipeline.dispatch import evaluate
    from kdlab.reporting.table import format_table

    pairs = []
    for text in args.cka:
        student_layer, sep, teacher_layer = text.partition(":")
        if not sep or not student_layer or not teacher_layer:
            raise ConfigError(
                f"--cka takes STUDENT_LAYER:TEACHER_LAYER (module paths, see kdlab layers); got {text!r}."
            )
        pairs.append((student_layer, teacher_layer))
    from kdlab.pipeline.config import apply_overrides

    data = apply_overrides({"data": {"name": args.data}}, [f"data.{item}" for item in args.data_option])["data"]
    result = evaluate(args.model, args.teacher, data, split=args.split, device=args.device, cka=pairs)
    keys = list(dict.fromkeys([*result["teacher"], *result["student"]]))
    headers = [k if k in NOT_PERCENT else f"{k} %" for k in keys]

    def cell(row: dict[str, float], key: str) -> str | None:
        if key not in row:
            return None
        return f"{row[key]:.4f}" if key in NOT_PERCENT else f"{100 * row[key]:.2f}"

    rows = [[who, *[cell(result[who], k) for k in keys]] for who in ("teacher", "student")]
    print(f"{args.split} split of {args.data}")
    print(format_table(["model", *headers], rows))
    for pair, value in result.get("cka", {}).items():
        print(f"CKA {pair.replace('~', ' vs ')}: linear {value['linear']:.4f} · RBF {value['rbf']:.4f}")
    return 0
