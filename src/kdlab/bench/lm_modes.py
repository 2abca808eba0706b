"""What each mode of ``kdlab bench lm`` runs, timed step by step; ``python -m kdlab.bench.lm_modes MODE --work FOLDER
--out FILE.json`` runs one mode in a process of its own on a saved :class:`LMWorkload` (what
:func:`kdlab.bench.lm_bench.bench_lm` does for each mode, so that each has its own peak memory).

kdlab's modes run exactly what ``kdlab distill`` runs for ``method=lm_kd``: an :class:`LMLoader` with
``trim_logits`` (the models compute the completions' logits only), the frozen :class:`Teacher` called on
``batch.x``, the ``lm_kd`` method (forward KL at τ = 1; on-policy with λ = 1, ``max_new_tokens = C`` and no
end-of-sequence stop) and :meth:`Engine.step` with AdamW at a constant rate, the loss meter kept on the device. A
timed kdlab step is: make the batch, ``Engine.step`` (on-policy: the sampling included), add to the meter. The floor's
and TRL's steps are timed by their runners (:func:`kdlab.bench.lm_reference.run_floor`,
:func:`kdlab.bench.lm_trl.run_trl_gkd`).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdlab.bench.lm_pair import LM_MODES, LR, PHASES, TRL_MISSING, LMWorkload
from kdlab.bench.lm_reference import run_floor
from kdlab.bench.measure import Split
from kdlab.bench.modes import KdlabLoop
from kdlab.bench.timing import PhaseTimer, no_phase, synchronize
from kdlab.core.batch import Batch
from kdlab.data.lm import LMLoader
from kdlab.losses.tokens import IGNORE_INDEX
from kdlab.methods import MethodContext, build_method
from kdlab.methods.lm import LMContext, lm_labels
from kdlab.tasks.lm.models import takes_logits_to_keep, vocabulary
from kdlab.training.engine import Engine, Recipe
from kdlab.training.optim import OptimConfig
from kdlab.training.teachers import Teacher


@dataclass(frozen=True)
class ModeSettings:
    """How to run one mode: the device, batch, warm-up and timed steps, and kdlab's precision and compilation."""

    device: torch.device
    batch_size: int
    warmup: int
    steps: int
    precision: str = "auto"
    compile: bool = False


def _check_batch(batch: Batch, data: torch.Tensor, prompt_length: int) -> dict[str, Any]:
    """What a prepared batch trains: the trained tokens per row, and the share of its completion tokens that differ
    from the data's (0 supervised; ≈ 1 when the student sampled them)."""
    ids = batch.x["input_ids"].cpu()
    trained = (batch.y != IGNORE_INDEX).sum(1)
    differ = (ids[:, prompt_length:] != data[:, prompt_length:]).float().mean()
    return {"trained_tokens_per_row": sorted({int(t) for t in trained.tolist()}), "completion_replaced": float(differ)}


def kdlab_engine(work: LMWorkload, on_policy: bool, settings: ModeSettings) -> KdlabLoop:
    """``lm_kd`` through THE engine over an LMLoader, as ``kdlab distill`` builds it (see the module docstring)."""
    device = settings.device
    student = copy.deepcopy(work.student).to(device)
    teacher = Teacher(copy.deepcopy(work.teacher)).to(device)
    tokens = work.tokens()
    recipe = Recipe(1, OptimConfig(name="adamw", lr=LR, weight_decay=0.0, schedule="constant"), work.seed,
                    precision=settings.precision, compile=settings.compile)  # fmt: skip
    params = {"divergence": "forward_kl", "mode": "on_policy" if on_policy else "supervised", "lmbda": 1.0,
              "max_new_tokens": work.completion_length, "eos_ids": []}  # fmt: skip
    context = MethodContext(
        student, teacher, vocabulary(student), num_train=len(tokens), epochs=1, label_loss=lm_labels,
        label_smoothing=False, extras=LMContext(eos_ids=(), pad_id=0, has_prompts=True),
    )  # fmt: skip
    torch.manual_seed(work.seed)  # the pipeline seeds before building (the method's draws come from it)
    method = build_method("lm_kd", params, context).to(device)
    trim = takes_logits_to_keep(student, teacher.members[0])
    loader = LMLoader(tokens, settings.batch_size, device=device, shuffle=True, seed=work.seed, trim_logits=trim)
    engine = Engine(student=student, method=method, train=loader, recipe=recipe, state_path=Path(os.devnull),
                    teacher=lambda batch: teacher(batch.x), progress=False, label="bench lm")  # fmt: skip
    return KdlabLoop(engine)


def _endless(loop: KdlabLoop) -> Iterator[Batch]:
    for epoch in itertools.count():
        yield from loop.epoch(epoch)  # type: ignore[misc]


def run_kdlab(work: LMWorkload, on_policy: bool, settings: ModeSettings) -> dict[str, Any]:
    """Per-step seconds of kdlab's step (batch, ``Engine.step``, meter; a device wait at both ends), then the
    phase split over as many more steps; ``checks`` describe what the first step trained on. The first warm-up step
    is always taken (also with ``warmup`` 0): it records the checks, which read the batch on the host."""
    device, loop = settings.device, kdlab_engine(work, on_policy, settings)
    batches, method, checks = _endless(loop), loop.engine.method, {}
    prepare = method.prepare_batches

    def recording(micros: list[Batch]) -> list[Batch]:
        out = prepare(micros)
        checks.update(_check_batch(out[0], work.input_ids[micros[0].index.cpu()], work.prompt_length))
        return out

    method.prepare_batches = recording  # the first step only: records what the method trains on
    loop.step(next(batches))
    method.prepare_batches = prepare
    for batch in itertools.islice(batches, max(settings.warmup - 1, 0)):
        loop.step(batch)
    seconds = []
    for _ in range(settings.steps):
        synchronize(device)
        start = time.perf_counter()
        loop.step(next(batches))
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    timer = PhaseTimer(device)
    loop.phases = timer
    synchronize(device)
    start = time.perf_counter()
    for batch in itertools.islice(batches, settings.steps):
        loop.step(batch)
    synchronize(device)
    total = time.perf_counter() - start
    loop.phases = no_phase
    loss = loop.summary()["loss"]
    return {"seconds": seconds, "split_ms": split_ms(Split(dict(timer.seconds), total, settings.steps)),
            "checks": {**checks, "loss": loss}}  # fmt: skip


def split_ms(split: Split) -> dict[str, float]:
    """The engine's phases in ms per step, ``other`` (making the batch, the meter, zero_grad) the rest of the
    step, and ``step`` the split pass's mean step."""
    parts = {name: 1000 * split.seconds.get(name, 0.0) / split.steps for name in PHASES}
    step = 1000 * split.total / split.steps
    return {**parts, "other": step - sum(parts.values()), "step": step}


def run_floor_mode(work: LMWorkload, on_policy: bool, settings: ModeSettings) -> dict[str, Any]:
    """Per-step seconds of :func:`kdlab.bench.lm_reference.run_floor` over the same kind of batches."""
    device = settings.device
    ids = work.input_ids.to(device)
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(work.seed)).to(device)
    batches = [ids[order[i : i + settings.batch_size]] for i in range(0, len(ids), settings.batch_size)]
    batches = [b for b in batches if len(b) == settings.batch_size]
    seconds = run_floor(
        copy.deepcopy(work.teacher).to(device), copy.deepcopy(work.student).to(device), batches,
        on_policy=on_policy, warmup=settings.warmup, steps=settings.steps, prompt_length=work.prompt_length,
        max_new_tokens=work.completion_length, lr=LR, seed=work.seed,
    )  # fmt: skip
    return {"seconds": seconds}


def trl_missing() -> str | None:
    """:data:`TRL_MISSING` when TRL's GKD trainer cannot be imported, else None."""
    from kdlab.bench import lm_trl

    try:
        lm_trl.import_trl()
    except ImportError:
        return TRL_MISSING
    return None


def run_trl_mode(work: LMWorkload, on_policy: bool, tuned: bool, settings: ModeSettings) -> dict[str, Any]:
    """Per-step seconds of TRL's ``GKDTrainer`` (λ = 1 or 0, β = 0), or ``skipped`` when TRL is not installed."""
    missing = trl_missing()
    if missing:
        return {"skipped": missing}
    from kdlab.bench.lm_trl import run_trl_gkd

    with tempfile.TemporaryDirectory(prefix="kdlab-bench-trl-") as scratch:
        seconds = run_trl_gkd(
            work.teacher, work.student, work.tokenizer, work.input_ids, work.prompt_length,
            lmbda=1.0 if on_policy else 0.0, beta=0.0, batch_size=settings.batch_size,
            max_new_tokens=work.completion_length, warmup=settings.warmup, steps=settings.steps, tuned=tuned,
            output_dir=scratch, lr=LR, seed=work.seed,
        )  # fmt: skip
    return {"seconds": seconds}


def run_mode(work: LMWorkload, mode: str, settings: ModeSettings) -> dict[str, Any]:
    """One mode's raw figures: ``seconds`` per timed step, and ``split_ms``/``checks`` (kdlab) or ``skipped``."""
    on_policy = "on_policy" in mode
    if mode.startswith("kdlab_"):
        return run_kdlab(work, on_policy, settings)
    if mode.startswith("floor_"):
        return run_floor_mode(work, on_policy, settings)
    if mode.startswith("trl_"):
        return run_trl_mode(work, on_policy, not mode.endswith("_defaults"), settings)
    raise ValueError(f"unknown LM bench mode {mode!r}; valid: {', '.join(LM_MODES)}")


def resident_bytes() -> int:
    """This process's resident memory now (Linux ``/proc/self/statm``; 0 where unknown)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def peak_memory(device: torch.device, baseline: int) -> dict[str, Any]:
    """The process's peak: CUDA ``max_memory_allocated`` on a GPU, else the peak resident set (``ru_maxrss``) of the
    whole process — interpreter, libraries and workload included — with ``baseline``, the resident set before the
    mode was built (its libraries imported, the workload loaded)."""
    if device.type == "cuda":
        return {"kind": "cuda_max_allocated", "bytes": torch.cuda.max_memory_allocated(device)}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"kind": "peak_rss", "bytes": peak, "baseline_bytes": baseline}


def main(argv: list[str] | None = None) -> int:
    """Run one mode on a saved workload and write its figures as JSON (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m kdlab.bench.lm_modes")
    parser.add_argument("mode", choices=LM_MODES)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    settings = ModeSettings(device, args.batch, args.warmup, args.steps, args.precision, args.compile)
    work = LMWorkload.load(args.work)
    if args.mode.startswith("trl_"):
        trl_missing()  # imported before the baseline: its libraries are not the mode's working memory
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    baseline = resident_bytes()
    figures = run_mode(work, args.mode, settings)
    figures |= {"memory": peak_memory(device, baseline), "threads": torch.get_num_threads()}
    args.out.write_text(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
