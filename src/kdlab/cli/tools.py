"""The other commands: ``study``, ``analyze``, ``export``, ``runs``, ``layers``, ``list`` and ``bench``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kdlab.core.errors import ConfigError, suggest, unknown_name

if TYPE_CHECKING:
    from kdlab.bench.lm_pair import LMPair

KINDS = {"models": "models", "datasets": "data sets", "methods": "methods"}  # `kdlab list KIND` → its line


def cmd_study(args: argparse.Namespace) -> int:
    out = Path(args.out or f"runs/study-{args.study}-{args.preset}")
    if args.study in ("structural", "encoder", "lm"):
        from kdlab.studies import encoder, lm, structural

        if args.only:
            raise ConfigError(f"--only selects experiments of the fidelity study, not of the {args.study} study.")
        study = {"structural": structural, "encoder": encoder, "lm": lm}[args.study]
        folder = study.run_study(args.preset, out, progress=not args.quiet)
        print(f"report: {folder / 'report.md'} · numbers: {folder / 'results.json'}")
        return 0
    if args.study == "ekd":
        from kdlab.studies import ekd

        if args.only:
            raise ConfigError("--only selects experiments of the fidelity study; the ekd study is one experiment.")
        folder = ekd.run_study(args.preset, out, progress=not args.quiet)
    else:
        from kdlab.studies.fidelity import run_study

        only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
        folder = run_study(args.preset, out, only=only, progress=not args.quiet)
    print(f"report: {folder / 'report.md'} · {folder / 'report.html'} · numbers: {folder / 'results.json'}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from kdlab.analysis import report
    from kdlab.analysis.analyze import analyze, default_out
    from kdlab.analysis.subjects import load_subjects
    from kdlab.studies.what_transferred import PRESETS, train_preset

    if args.images < 3:
        raise ConfigError(f"--images must be at least 3 (decision boundaries need image triplets); got {args.images}.")
    if args.preset is not None and args.preset not in PRESETS:
        raise ConfigError(f"Unknown analyze preset {args.preset!r}; valid presets: {', '.join(PRESETS)}.")
    if args.preset is None and not args.runs:
        raise ConfigError(
            "kdlab analyze needs run folders (a teacher's students and independent students) or --preset."
        )
    if args.preset is not None:
        args.out = args.out or f"runs/analyze-{args.preset}"
        args.runs = [*args.runs, *map(str, train_preset(Path(args.out), progress=True))]
    paths = [Path(p) for p in args.runs]
    subjects = load_subjects(paths)
    out = report.write(
        subjects, analyze(subjects, images=args.images), Path(args.out) if args.out else default_out(paths)
    )
    print(f"report: {out / 'report.html'} · {out / 'report.md'} · numbers: {out / 'results.json'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from kdlab.tasks.image.depths import export_run

    depth = args.depth.split("=", 1)
    if len(depth) != 2 or depth[0] != "depth" or not depth[1]:
        raise ConfigError(f"kdlab export RUN depth=K: expected depth=K (e.g. depth=20), got {args.depth!r}.")
    path, about = export_run(Path(args.run), depth[1], Path(args.out) if args.out else None)
    options = ", ".join(f"{k}={v}" for k, v in about["options"].items())
    print(
        f"depth {about['depth']} → {path}: plain {about['model']}({options}), {about['parameters']:,} parameters, "
        f"{about['macs'] / 1e6:.2f} M multiply-adds; largest logit difference to the switchable model "
        f"{about['max_abs_diff']:.1e}. Use it as teacher={path} or with kdlab.models.files.load_model_file."
    )
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from kdlab.reporting.table import format_table
    from kdlab.runs.index import RunIndex

    columns = [
        "name",
        "status",
        "method",
        "student",
        "dataset",
        "seed",
        "accuracy",
        "agreement",
        "kl",
        "ece",
        "wall_time_s",
    ]
    rows = RunIndex(Path(args.runs_dir)).rows(
        sort=args.sort, descending=args.desc, filters=args.filter, limit=args.limit
    )
    if not rows:
        print(f"No runs in {args.runs_dir} match.")
        return 0
    fmt = {"accuracy": 100, "agreement": 100, "ece": 100}
    table = [
        [(f"{r[c] * fmt[c]:.2f}" if c in fmt else f"{r[c]:.4g}") if isinstance(r[c], float) else r[c] for c in columns]
        for r in rows
    ]
    print(format_table([f"{c} %" if c in fmt else c for c in columns], table))
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    import torch

    from kdlab.data import load_dataset
    from kdlab.data.base import DataInfo
    from kdlab.models.factory import ModelSpec, build_model
    from kdlab.models.files import load_model_file, record_info, resolve_model_path
    from kdlab.reporting.table import format_table
    from kdlab.training.taps import Taps, module_paths

    if any(mark in args.model for mark in ("/", ":")) or args.model.endswith(".pt"):
        model, record = load_model_file(resolve_model_path(args.model, "model")[0])
        shape = record_info(record).input_shape
    else:
        info = (
            load_dataset(args.data).info
            if args.data
            else DataInfo("cifar-shaped", 10, 3, (32, 32), (0.5,) * 3, (0.25,) * 3)
        )
        model = build_model(ModelSpec(args.model), info, where="model")
        shape = info.input_shape
    names = args.only.split(",") if args.only else module_paths(model)
    stages = set(getattr(model, "stage_names", ()))
    modules = dict(model.named_modules())
    with Taps(model, names, owner=args.model) as taps, torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
        outputs = taps.collect()
    rows = [
        [
            n,
            type(modules[n]).__name__,
            "x".join(map(str, outputs[n].shape[1:])) if n in outputs else "-",
            "stage" if n in stages else "",
        ]
        for n in names
    ]
    print(format_table(["layer", "module", "output shape", "note"], rows))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """What is registered, grouped by task."""
    from kdlab.data import DATASETS
    from kdlab.methods import METHODS
    from kdlab.models import MODELS
    from kdlab.models.files import pretrained_names
    from kdlab.pipeline.task import tasks
    from kdlab.reporting.table import format_table

    registry = tasks()
    valid = [*KINDS, "pretrained", *registry.names()]
    if args.kind == "sequence":
        raise ConfigError(
            "kdlab list groups everything by task now: use kdlab list sequence_labelling or kdlab list "
            "dependency_parsing (or kdlab list for every task)."
        )
    if args.kind is not None and args.kind not in valid:
        raise unknown_name("listing", args.kind, valid)
    shown = [t for t in registry.names() if args.kind in (None, t, *KINDS)]
    if args.kind == "pretrained":
        print(f"pretrained: {', '.join(pretrained_names())}")
        return 0
    if args.kind == "methods":  # the catalogue, with each method's tasks and defaults
        rows = []
        for name in METHODS.names():
            entry, tasks_of = METHODS.get(name), METHODS.entry(name).tasks
            defaults = ", ".join(
                f"{f.name}={f.default!r}" for f in dataclasses.fields(entry.params) if not f.name.endswith("_layers")
            )
            served = "every task" if tasks_of is None else ", ".join(tasks_of)
            rows.append([name, served, "yes" if entry.needs_teacher else "no", entry.summary, defaults])
        print(format_table(["method", "tasks", "teacher", "what", "defaults"], rows))
        return 0
    for task in shown:
        print(f"{task}: {registry.get(task).summary}")
        for kind, names in (("models", MODELS.names(task)), ("data sets", DATASETS.names(task)),
                            ("methods", METHODS.names(task))):  # fmt: skip
            if args.kind in (None, task) or KINDS.get(args.kind) == kind:
                print(f"  {kind}: {', '.join(names)}")
    if args.kind is None:
        print(f"pretrained: {', '.join(pretrained_names())}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from kdlab import bench
    from kdlab.bench.lm_pair import LM_PAIRS, find_lm_pair
    from kdlab.pipeline.member import resolve_device
    from kdlab.reporting.table import format_table

    if args.list:
        rows = [
            [p.name, p.teacher_name, p.student_name, p.data_label, f"{p.train_size:,} {p.unit}", p.batch_size]
            for p in bench.PAIRS.values()
        ]
        rows += [[f"{p.name} ({', '.join(p.aliases)})", p.teacher_name, p.student_name, p.data_label, "steps",
                  f"{p.batch_size} × {p.length} tokens"] for p in LM_PAIRS.values()]  # fmt: skip
        print(format_table(["pair", "teacher", "student", "data", "epoch", "batch"], rows))
        return 0
    for name in args.pairs:
        if name not in bench.PAIRS and find_lm_pair(name) is None:
            names = [*bench.PAIRS, *LM_PAIRS, *(a for p in LM_PAIRS.values() for a in p.aliases)]
            raise ConfigError(f"Unknown bench pair {name!r}.{suggest(name, names)} Valid pairs: {', '.join(names)}.")
    lm_pairs = [p for p in map(find_lm_pair, args.pairs) if p is not None]
    if lm_pairs:
        return _bench_lm(args, lm_pairs)
    for flag, value in (("--rounds", args.rounds), ("--top-k", args.top_k), ("--chunk-size", args.chunk_size)):
        if value is not None:
            raise ConfigError(f"{flag} applies to the language-model pair (kdlab bench lm) only.")
    pairs = [bench.get_pair(name) for name in args.pairs]
    given = {"modes": args.modes and tuple(args.modes), "peak_tflops": args.peak_tflops, "steps": args.steps,
             "warmup": args.warmup}  # fmt: skip
    settings = bench.Settings(
        device=resolve_device(args.device),
        batch_size=args.batch,
        epochs=args.epochs,
        precision=args.precision,
        compile=args.compile,
        **{k: v for k, v in given.items() if v is not None},
    )
    settings.check()
    pairs = pairs or bench.default_pairs(settings.device)
    print(f"kdlab bench: {', '.join(p.name for p in pairs)} on {settings.device}", file=sys.stderr)
    result = bench.run_bench(pairs, settings, log=lambda line: print(f"  {line}", file=sys.stderr))
    print(bench.text(result))
    if args.out:
        bench.write_result(Path(args.out), result)
        print(f"\nresults in {args.out}")
    return 0


def _bench_lm(args: argparse.Namespace, pairs: list[LMPair]) -> int:
    """``kdlab bench lm``: the causal-LM pair, kdlab against the floor and TRL (:mod:`kdlab.bench.lm_bench`)."""
    from kdlab.bench import lm_bench, write_result
    from kdlab.pipeline.member import resolve_device

    if len(pairs) != len(args.pairs):
        raise ConfigError(
            "The language-model pair is benched on its own (its modes and figures differ from the image and text "
            "pairs'): run `kdlab bench lm` and the other pairs in separate commands."
        )
    if args.epochs is not None:
        raise ConfigError("--epochs does not apply to the language-model pair, which times steps (--steps).")
    given = {"modes": args.modes and tuple(args.modes), "steps": args.steps, "warmup": args.warmup,
             "rounds": args.rounds, "top_k": args.top_k, "chunk_size": args.chunk_size}  # fmt: skip
    settings = lm_bench.LMSettings(
        device=resolve_device(args.device),
        batch_size=args.batch,
        precision=args.precision,
        compile=args.compile,
        **{k: v for k, v in given.items() if v is not None},
    )
    settings.check()
    print(f"kdlab bench: {', '.join(p.name for p in pairs)} on {settings.device}", file=sys.stderr)
    result = lm_bench.run_lm_bench(pairs, settings, log=lambda line: print(f"  {line}", file=sys.stderr))
    print(lm_bench.lm_text(result))
    if args.out:
        write_result(Path(args.out), result)
        print(f"\nresults in {args.out}")
    return 0
