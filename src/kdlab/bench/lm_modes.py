"""What each mode of ``kdlab bench lm`` runs, timed step by step; ``python -m kdlab.bench.lm_modes MODE --work FOLDER
--out FILE.json`` runs one mode in a process of its own on a saved :class:`LMWorkload` (what
:func:`kdlab.bench.lm_bench.bench_lm` does for each mode, so that each has its own peak memory); with
``--build-cache`` it only builds ``kdlab_cached``'s top-k teacher cache (before that mode's timed processes).

kdlab's modes run exactly what ``kdlab distill`` runs for ``method=lm_kd``: an :class:`LMLoader` with
``trim_logits`` (the models compute the completions' logits only), the frozen :class:`Teacher` called on
``batch.x``, the ``lm_kd`` method (forward KL at τ = 1; on-policy with λ = 1, ``max_new_tokens = C`` and no
end-of-sequence stop) and :meth:`Engine.step` with AdamW at a constant rate, the loss meter kept on the device.
``kdlab_cached`` takes its teacher from :func:`kdlab.tasks.lm.teacher_source.teacher_source` with ``cache.top_k=k``
(the top-k cache of :mod:`kdlab.cache.lm`, found or built in ``cache_dir``; the loss on k + 1 bins, tail
``bucket``); ``kdlab_chunked`` sets ``method.chunk_size`` and its loader ``hidden_states`` (both models return
their final hidden states, the loss makes the logits chunk by chunk from their output heads), as the LM task's
``train_batches`` does. A timed kdlab step is: make the batch, ``Engine.step`` (on-policy: the sampling included),
add to the meter. The floor's and TRL's steps are timed by their runners (:func:`kdlab.bench.lm_reference.run_floor`,
:func:`kdlab.bench.lm_trl.run_trl_gkd`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from kdlab.bench.lm_pair import CHUNK_SIZE, LM_MODES, LR, PHASES, TOP_K, TRL_MISSING, LMWorkload
from kdlab.bench.lm_reference import run_floor
from kdlab.bench.measure import Split
from kdlab.bench.modes import KdlabLoop
from kdlab.bench.timing import PhaseTimer, no_phase, synchronize
from kdlab.cache.lm import TopKTeacher, target_offsets
from kdlab.cache.settings import CacheConfig
from kdlab.core.batch import Batch
from kdlab.data.lm import LMLoader
from kdlab.losses.tokens import next_token_targets
from kdlab.methods import MethodContext, build_method
from kdlab.methods.lm import LMContext, lm_labels
from kdlab.tasks.lm.models import takes_logits_to_keep, vocabulary
from kdlab.tasks.lm.teacher_source import online, teacher_source
from kdlab.training.engine import Engine, Recipe, TeacherSource
from kdlab.training.optim import OptimConfig
from kdlab.training.teachers import Teacher


@dataclass(frozen=True)
class ModeSettings:
    """How to run one mode: the device, batch, warm-up and timed steps, kdlab's precision and compilation, the cached
    mode's k and cache folder (None: a temporary one), the chunked mode's rows per chunk."""

    device: torch.device
    batch_size: int
    warmup: int
    steps: int
    precision: str = "auto"
    compile: bool = False
    top_k: int = TOP_K
    chunk_size: int = CHUNK_SIZE
    cache_dir: Path | None = None


def _check_batch(batch: Batch, data: torch.Tensor, prompt_length: int) -> dict[str, Any]:
    """What a prepared batch trains: the next-token targets per row, and the share of its completion tokens that
    differ from the data's (0 supervised; ≈ 1 when the student sampled them)."""
    ids = batch.x["input_ids"].cpu()
    trained = next_token_targets(batch.y)[1].sum(1)
    differ = (ids[:, prompt_length:] != data[:, prompt_length:]).float().mean()
    return {"trained_tokens_per_row": sorted({int(t) for t in trained.tolist()}), "completion_replaced": float(differ)}


def kdlab_engine(work: LMWorkload, mode: str, settings: ModeSettings) -> tuple[KdlabLoop, dict[str, Any]]:
    """``lm_kd`` through THE engine over an LMLoader, as ``kdlab distill`` builds it (see the module docstring), and
    where its teacher outputs come from (``kdlab_cached``: the cache's description, its build time in ``seconds``
    and its ``tokens``)."""
    device = settings.device
    chunked, cached = mode == "kdlab_chunked", mode == "kdlab_cached"
    student = copy.deepcopy(work.student).to(device)
    teacher = Teacher(copy.deepcopy(work.teacher)).to(device)
    tokens = work.tokens()
    recipe = Recipe(1, OptimConfig(name="adamw", lr=LR, weight_decay=0.0, schedule="constant"), work.seed,
                    precision=settings.precision, compile=settings.compile)  # fmt: skip
    params = {"divergence": "forward_kl", "mode": "on_policy" if mode == "kdlab_on_policy" else "supervised",
              "lmbda": 1.0, "max_new_tokens": work.completion_length, "eos_ids": [],
              **({"chunk_size": settings.chunk_size} if chunked else {})}  # fmt: skip
    context = MethodContext(
        student, teacher, vocabulary(student), num_train=len(tokens), epochs=1, label_loss=lm_labels,
        label_smoothing=False, extras=LMContext(eos_ids=(), pad_id=0, has_prompts=True, vocab_size=work.vocab_size),
    )  # fmt: skip
    torch.manual_seed(work.seed)  # the pipeline seeds before building (the method's draws come from it)
    method = build_method("lm_kd", params, context).to(device)
    trim = takes_logits_to_keep(student, teacher.members[0])
    loader = LMLoader(tokens, settings.batch_size, device=device, shuffle=True, seed=work.seed, trim_logits=trim,
                      hidden_states=chunked)  # fmt: skip
    source, described = online(teacher), {"kind": "online"}
    if cached:
        source, described = cached_teacher(work, method, teacher, settings)
    engine = Engine(student=student, method=method, train=loader, recipe=recipe, state_path=Path(os.devnull),
                    teacher=source, progress=False, label="bench lm")  # fmt: skip
    return KdlabLoop(engine), described


def cached_teacher(
    work: LMWorkload, method: torch.nn.Module, teacher: Teacher, settings: ModeSettings
) -> tuple[TeacherSource, dict[str, Any]]:
    """The run's top-k teacher cache as ``kdlab distill ... cache.top_k=k cache.dir=settings.cache_dir`` finds or
    builds it (batches of ``settings.batch_size``, as ``data.eval_batch_size``), with the ``seconds`` that took (a
    build includes hashing the teacher's weights and the sequences for the key), its ``bytes`` and the trained
    ``tokens`` it holds."""
    if settings.cache_dir is None:
        raise ValueError("kdlab_cached needs a cache folder (ModeSettings.cache_dir)")
    tokens = work.tokens()
    began = time.perf_counter()
    source, described = teacher_source(
        method, teacher, "bench-teacher", tokens, CacheConfig(top_k=settings.top_k, dir=str(settings.cache_dir)),
        enabled=True, precision=settings.precision, device=settings.device, batch_size=settings.batch_size,
        trim=takes_logits_to_keep(teacher.members[0]), log=lambda _: None,
    )  # fmt: skip
    seconds = time.perf_counter() - began
    if not isinstance(source, TopKTeacher):
        raise ValueError(f"kdlab_cached got no cache: {described.get('reason')}")
    return source, described | {"seconds": seconds, "bytes": source.nbytes, "tokens": int(target_offsets(tokens)[-1])}


def _endless(loop: KdlabLoop) -> Iterator[Batch]:
    for epoch in itertools.count():
        yield from loop.epoch(epoch)  # type: ignore[misc]


def run_kdlab(work: LMWorkload, mode: str, settings: ModeSettings) -> dict[str, Any]:
    """Per-step seconds of kdlab's step (batch, ``Engine.step``, meter; a device wait at both ends), then the
    phase split over as many more steps; ``checks`` describe what the first step trained on (and its loss,
    ``first_loss``), ``teacher`` where the teacher's outputs came from. The first warm-up step is always taken (also
    with ``warmup`` 0): it records the checks, which read the batch on the host. ``kdlab_cached`` without a
    ``cache_dir`` builds its cache in a temporary folder first (untimed)."""
    with contextlib.ExitStack() as stack:
        if mode == "kdlab_cached" and settings.cache_dir is None:
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="kdlab-bench-cache-"))
            settings = replace(settings, cache_dir=Path(scratch))
        return _run_kdlab(work, mode, settings)


def _run_kdlab(work: LMWorkload, mode: str, settings: ModeSettings) -> dict[str, Any]:
    device, (loop, described) = settings.device, kdlab_engine(work, mode, settings)
    batches, method, checks = _endless(loop), loop.engine.method, {}
    prepare = method.prepare_batches

    def recording(micros: list[Batch]) -> list[Batch]:
        out = prepare(micros)
        checks.update(_check_batch(out[0], work.input_ids[micros[0].index.cpu()], work.prompt_length))
        return out

    method.prepare_batches = recording  # the first step only: records what the method trains on
    loop.step(next(batches))
    checks["first_loss"] = float(loop.meter.sums["loss"])  # the first batch's loss (read with the checks)
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
            "checks": {**checks, "loss": loss}, "teacher": described}  # fmt: skip


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
    """One mode's raw figures: ``seconds`` per timed step, and ``split_ms``/``checks``/``teacher`` (kdlab) or
    ``skipped``."""
    on_policy = "on_policy" in mode
    if mode.startswith("kdlab_"):
        return run_kdlab(work, mode, settings)
    if mode.startswith("floor_"):
        return run_floor_mode(work, on_policy, settings)
    if mode.startswith("trl_"):
        return run_trl_mode(work, on_policy, not mode.endswith("_defaults"), settings)
    raise ValueError(f"unknown LM bench mode {mode!r}; valid: {', '.join(LM_MODES)}")


def build_cache(work: LMWorkload, settings: ModeSettings) -> dict[str, Any]:
    """``kdlab_cached``'s cache found or built in ``settings.cache_dir``, as its run would (before its timed
    processes, so that their peak memory is the steps', not the teacher's full-vocabulary build pass): its
    description, build ``seconds`` and ``tokens``."""
    _, described = kdlab_engine(work, "kdlab_cached", settings)
    return described


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
    parser.add_argument("--top-k", type=int, default=TOP_K)
    parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--build-cache", action="store_true", help="only build kdlab_cached's cache in --cache-dir")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    settings = ModeSettings(device, args.batch, args.warmup, args.steps, args.precision, args.compile, args.top_k,
                            args.chunk_size, args.cache_dir)  # fmt: skip
    work = LMWorkload.load(args.work)
    if args.mode.startswith("trl_"):
        trl_missing()  # imported before the baseline: its libraries are not the mode's working memory
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    baseline = resident_bytes()
    figures = {"cache": build_cache(work, settings)} if args.build_cache else run_mode(work, args.mode, settings)
    figures |= {"memory": peak_memory(device, baseline), "threads": torch.get_num_threads()}
    args.out.write_text(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
