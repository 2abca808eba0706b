"""The ``kdlab`` command. Each sub-command is a thin call into the library.

User mistakes exit with code 2 and one paragraph on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kdlab.core.errors import ConfigError, Interrupted, KdlabError

if TYPE_CHECKING:  # the CLI imports the library lazily, so that `kdlab --help` starts fast
    from kdlab.pipeline.config import Config
    from kdlab.pipeline.execute import Outcome

MAIN_PRESET = "fashion_mnist_kd"
COMPARE_PRESET = "fashion_mnist_compare"
TORCHRUN_COMMANDS = ("train", "distill", "compare", "resume")  # the ones that train data-parallel under torchrun


def _torchrun() -> bool:
    """Launched by torchrun with several processes (read from the environment: kdlab.training.distributed imports torch,
    which `kdlab --help` should not wait for)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _main_process() -> bool:
    """Rank 0 under torchrun (the process that prints results), else True."""
    return os.environ.get("RANK", "0") == "0"


def _preset(source: str | None, overrides: Sequence[str], preset: str) -> str | None:
    """The config to start from: the given one; else the Fashion-MNIST preset, unless the overrides name a sequence
    data set (whose models and methods the image preset does not fit)."""
    if source is not None:
        return source
    from kdlab.data.sentences.corpora import is_sequence_data

    names = [item.split("=", 1)[1] for item in overrides if item.startswith(("data.name=", "data="))]
    return None if names and is_sequence_data(names[-1]) else preset


def _split(items: Sequence[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG] key=value ...`` → (config or None, overrides)."""
    if items and "=" not in items[0]:
        return items[0], list(items[1:])
    return None, list(items)


def _announce(c: Config, command: str, quiet: bool) -> None:
    if quiet or not _main_process():
        return
    teacher = f" · teacher {', '.join(map(str, c.teacher))}" if c.teacher else ""
    options = ", ".join(f"{k}={v}" for k, v in c.student.options.items())
    if command.endswith("compare"):
        from kdlab.pipeline.execute import compared_methods

        methods = f"methods {', '.join(label for label, _ in compared_methods(c))} and the independent student"
    else:
        methods = f"method {c.method.name}"
    print(
        f"kdlab {command}: {c.data.name}{teacher} · student {c.student.name}{f'({options})' if options else ''}"
        f" · {methods} · {c.epochs} epochs · seeds {','.join(map(str, c.seeds))}",
        file=sys.stderr,
    )


def _report(outcome: Outcome) -> None:
    if not _main_process():
        return
    print(outcome.table)
    print(f"\nwall time {outcome.wall_time_s:.1f} s · results in {outcome.folder}")


def cmd_run(args: argparse.Namespace) -> int:
    from kdlab.pipeline import config as cfg
    from kdlab.pipeline.execute import execute

    source, overrides = _split(args.items)
    if args.command != "train":
        source = _preset(source, overrides, MAIN_PRESET if args.command == "distill" else COMPARE_PRESET)
    raw = cfg.apply_overrides(cfg.load_mapping(source), overrides)
    if args.command == "train":
        raw.setdefault("method", {"name": "ce"})
    config = cfg.resolve(raw)
    _announce(config, args.command, args.quiet)
    _report(execute(config, args.command, progress=not args.quiet))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from kdlab.pipeline import config as cfg
    from kdlab.pipeline.execute import execute
    from kdlab.reporting import compare

    source, overrides = _split(args.items)
    config = cfg.resolve(cfg.apply_overrides(cfg.load_mapping(_preset(source, overrides, COMPARE_PRESET)), overrides))
    _announce(config, "compare", args.quiet)
    outcome = execute(config, "compare", progress=not args.quiet)
    from kdlab.data.sentences.corpora import is_sequence_data

    if is_sequence_data(config.data.name):  # taggers/parsers: the table (also in the group's summary.json)
        _report(outcome)
        return 0
    if not _main_process():  # the files and the table are rank 0's to write
        return 0
    print(compare.write(outcome.folder, outcome.summaries, config))
    print(f"\nwall time {outcome.wall_time_s:.1f} s · compare.json, compare.md, compare.png in {outcome.folder}")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    out = Path(args.out or f"runs/study-{args.study}-{args.preset}")
    if args.study == "structural":
        from kdlab.studies import structural

        if args.only:
            raise ConfigError("--only selects experiments of the fidelity study, not of the structural study.")
        folder = structural.run_study(args.preset, out, progress=not args.quiet)
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


def cmd_resume(args: argparse.Namespace) -> int:
    from kdlab.pipeline import config as cfg
    from kdlab.pipeline.execute import execute
    from kdlab.runs.folder import RunFolder

    folder = RunFolder(Path(args.run))
    command = folder.command()
    config = cfg.resolve(folder.read_config())
    _announce(config, f"resume {command}", args.quiet)
    outcome = execute(config, command, folder=folder.path, resume=True, progress=not args.quiet)
    if command == "compare" and _main_process():
        from kdlab.reporting import compare

        print(compare.write(outcome.folder, outcome.summaries, config))
    else:
        _report(outcome)
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
        f"{about['max_abs_diff']:.1e}. Use it as teacher={path} or with kdlab.models.factory.load_model_file."
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from kdlab.api import evaluate
    from kdlab.reporting.table import format_table

    teacher = args.teacher if len(args.teacher) > 1 else args.teacher[0]
    pairs = []
    for text in args.cka:
        student_layer, sep, teacher_layer = text.partition(":")
        if not sep or not student_layer or not teacher_layer:
            raise ConfigError(
                f"--cka takes STUDENT_LAYER:TEACHER_LAYER (module paths, see kdlab layers); got {text!r}."
            )
        pairs.append((student_layer, teacher_layer))
    result = evaluate(teacher, args.model, args.data, split=args.split, device=args.device, cka=pairs)
    keys = ["accuracy", "nll", "ece", "agreement", "kl", "tv"]
    rows = [[who, *[result[who].get(k) for k in keys]] for who in ("teacher", "student")]
    print(format_table(["model", *keys], [[r[0], *[None if v is None else f"{v:.4f}" for v in r[1:]]] for r in rows]))
    for pair, value in result.get("cka", {}).items():
        print(f"CKA {pair.replace('~', ' vs ')}: linear {value['linear']:.4f} · RBF {value['rbf']:.4f}")
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
    from kdlab.models.factory import ModelSpec, build_model, load_model_file, resolve_model_path
    from kdlab.reporting.table import format_table
    from kdlab.training.taps import Taps, module_paths

    if any(mark in args.model for mark in ("/", ":")) or args.model.endswith(".pt"):
        model, record = load_model_file(resolve_model_path(args.model)[0])
        shape = (record["data"]["in_channels"], *record["data"]["image_size"])
    else:
        info = (
            load_dataset(args.data).info
            if args.data
            else DataInfo("cifar-shaped", 10, 3, (32, 32), (0.5,) * 3, (0.25,) * 3)
        )
        model = build_model(ModelSpec(args.model), info, where="model")
        shape = (info.in_channels, *info.image_size)
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
    from kdlab.data import DATASETS
    from kdlab.data.sentences.corpora import SEQUENCE_DATASETS
    from kdlab.methods import METHODS
    from kdlab.methods.structured import SEQUENCE_METHODS
    from kdlab.models import MODELS
    from kdlab.models.factory import pretrained_names
    from kdlab.models.sequence import SEQUENCE_MODELS

    listings = {
        "models": MODELS.names(),
        "datasets": DATASETS.names(),
        "methods": METHODS.names(),
        "pretrained": pretrained_names(),
        "sequence": [*SEQUENCE_DATASETS.names(), *SEQUENCE_MODELS.names(), *SEQUENCE_METHODS.names()],
    }
    if args.kind == "methods":  # the catalogue, with each method's defaults
        import dataclasses

        from kdlab.reporting.table import format_table

        rows = []
        for name in METHODS.names():
            entry = METHODS.get(name)
            defaults = ", ".join(
                f"{f.name}={f.default!r}" for f in dataclasses.fields(entry.params) if not f.name.endswith("_layers")
            )
            rows.append([name, "yes" if entry.build.needs_teacher else "no", entry.summary, defaults])
        for name in SEQUENCE_METHODS.names():  # taggers and parsers (sequence data sets)
            cls = SEQUENCE_METHODS.get(name)
            defaults = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.Params))
            summary = (cls.__doc__ or "").strip().splitlines()[0]
            rows.append([f"{name} (sequence)", "yes" if cls.needs_teacher else "no", summary, defaults])
        print(format_table(["method", "teacher", "what", "defaults"], rows))
        return 0
    for kind in [args.kind] if args.kind else listings:
        print(f"{kind}: {', '.join(listings[kind])}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from kdlab import bench
    from kdlab.pipeline.member import resolve_device
    from kdlab.reporting.table import format_table

    if args.list:
        rows = [
            [p.name, p.teacher_name, p.student_name, p.data_label, f"{p.train_size:,}", p.batch_size]
            for p in bench.PAIRS.values()
        ]
        print(format_table(["pair", "teacher", "student", "data", "epoch images", "batch"], rows))
        return 0
    pairs = [bench.get_pair(name) for name in args.pairs]
    given = {"modes": args.modes and tuple(args.modes), "peak_tflops": args.peak_tflops}
    settings = bench.Settings(
        device=resolve_device(args.device),
        batch_size=args.batch,
        steps=args.steps,
        warmup=args.warmup,
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdlab", description="Knowledge distillation that measures fidelity.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (
        ("train", "train a model from labels (e.g. a teacher)"),
        ("distill", "distil a teacher into a student (no config: the Fashion-MNIST main job)"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("items", nargs="*", metavar="[CONFIG] key=value", help="a YAML file or preset, then overrides")
        s.add_argument("--quiet", action="store_true", help="no progress bars")
        s.set_defaults(fn=cmd_run)
    s = sub.add_parser("compare", help="several methods, same teacher/student/data/budget: table, json, md, chart")
    s.add_argument("items", nargs="*", metavar="[CONFIG] key=value", help="e.g. methods=kd,dkd,at seeds=0,1,2")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(fn=cmd_compare)
    s = sub.add_parser("study", help="reproduce a paper's claims at small scale and write a report")
    s.add_argument(
        "study",
        choices=["fidelity", "ekd", "structural"],
        help="fidelity: Stanton et al. 2021 (ensembles, data, λ, ...); ekd: depth-level dynamic nets with embedded KD; "
        "structural: Structural KD vs its baselines (taggers, parsers; Wang et al. 2021)",
    )
    s.add_argument(
        "preset", nargs="?", default="quick", help="quick (default, ≤ 1 h on 2 cores), smoke; fidelity also full"
    )
    s.add_argument("--only", default=None, help="comma-separated experiments to run (default: all)")
    s.add_argument("--out", default=None, help="report and runs folder (default runs/study-fidelity-PRESET)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(fn=cmd_study)
    s = sub.add_parser("analyze", help="what the students inherited from their teacher: results.json + report.html")
    s.add_argument("runs", nargs="*", help="distilled and independent (method=ce) run folders or groups, one teacher")
    s.add_argument("--preset", default=None, help="mnist-domains: train the paper's MNIST setting, then analyse it")
    s.add_argument("--out", default=None, help="output folder (default: analysis/ beside the first run)")
    s.add_argument("--images", type=int, default=1000, help="test images to analyse (default 1000)")
    s.set_defaults(fn=cmd_analyze)
    s = sub.add_parser("resume", help="continue an interrupted run or run group")
    s.add_argument("run", help="the run (or group) folder")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_resume)
    s = sub.add_parser("export", help="one depth of a depth-switchable run as a plain model file")
    s.add_argument("run", help="run folder (or model file) of a ddnn_* model")
    s.add_argument("depth", metavar="depth=K", help="the depth to export, e.g. depth=20")
    s.add_argument("--out", default=None, help="file to write (default RUN/depthK.pt)")
    s.set_defaults(fn=cmd_export)
    s = sub.add_parser("evaluate", help="fidelity of a saved model against a teacher")
    s.add_argument("model", help="model file or run folder of the student")
    s.add_argument(
        "--teacher", action="append", required=True, help="pretrained:NAME or a run folder (repeat: ensemble)"
    )
    s.add_argument("--data", default="fashion_mnist", help="data set name (default fashion_mnist)")
    s.add_argument("--split", choices=["test", "val", "train"], default="test")
    s.add_argument("--device", default="auto")
    s.add_argument(
        "--cka", action="append", default=[], metavar="S:T", help="CKA of student layer S and teacher layer T (repeat)"
    )
    s.set_defaults(fn=cmd_evaluate)
    s = sub.add_parser("runs", help="the run index as a table")
    s.add_argument("--runs-dir", default="runs")
    s.add_argument("--sort", default=None, help="column to sort by (default: start time)")
    s.add_argument("--desc", action="store_true", help="sort descending")
    s.add_argument("--filter", action="append", default=[], help="e.g. method=kd, accuracy>0.9, student~cnn")
    s.add_argument("--limit", type=int, default=None)
    s.set_defaults(fn=cmd_runs)
    s = sub.add_parser("layers", help="the module paths of a model (for feature taps) and their output shapes")
    s.add_argument("model", help="a zoo model name, pretrained:NAME or a model file/run folder")
    s.add_argument("--data", default=None, help="data set whose image shape to use (zoo models; default 3x32x32)")
    s.add_argument("--only", default=None, help="comma-separated layer names to check and show")
    s.set_defaults(fn=cmd_layers)
    s = sub.add_parser("bench", help="images/s and the split of a step: kdlab vs a classic KD loop, same pair")
    s.add_argument(
        "pairs",
        nargs="*",
        metavar="PAIR",
        help="pairs to bench (--list; default: all on a GPU, the Fashion-MNIST pairs on a CPU)",
    )
    s.add_argument("--list", action="store_true", help="list the pairs and exit")
    s.add_argument("--batch", type=int, default=None, help="batch size (default: each pair's own)")
    s.add_argument(
        "--steps",
        type=int,
        default=50,
        help="timed steps when not timing whole epochs, and the steps of the per-phase split (default 50)",
    )
    s.add_argument("--warmup", type=int, default=5, help="untimed steps before each measurement (default 5)")
    s.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="time N whole epochs (0: --steps steps; default: "
        "1 epoch for Fashion-MNIST pairs, --steps for CIFAR pairs)",
    )
    s.add_argument("--modes", nargs="+", default=None, help="any of student, online, cached, reference (default: all)")
    s.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    s.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="GPU peak for MFU in TFLOP/s (default 989: H100 SXM dense bf16)",
    )
    s.add_argument(
        "--precision",
        default="auto",
        help="the kdlab modes' precision: auto (default: bf16 on CUDA, fp32 on CPU), fp32, bf16 or fp16; "
        "the reference is always fp32",
    )
    s.add_argument("--compile", action="store_true", help="torch.compile the student in the kdlab modes")
    s.add_argument("--out", default=None, help="also write the figures and the machine description as JSON")
    s.set_defaults(fn=cmd_bench)
    s = sub.add_parser("list", help="registered models, data sets, methods and pretrained teachers")
    s.add_argument("kind", nargs="?", choices=["models", "datasets", "methods", "pretrained", "sequence"])
    s.set_defaults(fn=cmd_list)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args, extra = p.parse_known_args(argv)
    # overrides may follow options (`kdlab distill --quiet epochs=3`): argparse leaves them over
    if extra and (args.fn not in (cmd_run, cmd_compare) or any(e.startswith("-") for e in extra)):
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.items += extra
    try:
        if _torchrun() and args.command not in TORCHRUN_COMMANDS:
            raise ConfigError(
                f"kdlab {args.command} runs in one process; torchrun launches only kdlab "
                f"{', '.join(TORCHRUN_COMMANDS)}. Run kdlab {args.command} without torchrun."
            )
        return args.fn(args)
    except Interrupted as exc:
        _error(str(exc), exc)
        return exc.exit_code
    except KdlabError as exc:
        _error(f"error: {exc}", exc)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        _error("interrupted. Completed epochs are checkpointed; continue with `kdlab resume RUN_FOLDER`.", exc)
        return 130
    finally:
        if _torchrun():
            from kdlab.training import distributed

            distributed.shutdown()


def _error(message: str, exc: BaseException) -> None:
    """One paragraph on stderr. Under torchrun rank 0 reports; another rank only an error of its own, tagged
    with its rank (see :func:`kdlab.training.distributed.shared_error`)."""
    if not _torchrun():
        print(f"kdlab: {message}", file=sys.stderr)
        return
    from kdlab.training import distributed

    shared = distributed.shared_error(exc)
    if distributed.is_main():
        print(f"kdlab: {message}", file=sys.stderr, flush=True)
    elif not shared and not isinstance(exc, KeyboardInterrupt):
        print(f"kdlab (rank {distributed.rank()}): {message}", file=sys.stderr)
    if shared:
        distributed.settle()


if __name__ == "__main__":
    sys.exit(main())
