"""``kdlab bench lm``: kdlab's causal-LM distillation step against the plain-PyTorch floor and TRL's GKD trainer, on
one teacher → student pair, the same sequences and batch (:mod:`kdlab.bench.lm_pair`), each mode in a process of
its own so that its peak memory is its own; and kdlab's step with the top-k teacher cache (its build in a process of
its own before the rounds: build time, MiB, bytes per token) and with the chunked losses.

Per mode: the median wall time of ``steps`` timed steps after ``warmup`` untimed ones (each step fenced by a device
wait), tokens/s (batch × sequence length ÷ that median), kdlab's phase split (a second pass of ``steps`` steps, each
phase fenced), the peak memory and the step time over the floor's in the same data mode. kdlab's target: within
:data:`TARGET` × the floor, supervised and on-policy.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from kdlab.bench.lm_modes import ModeSettings, build_cache, peak_memory, resident_bytes, run_mode
from kdlab.bench.lm_pair import (
    CHUNK_SIZE,
    LM_MODE_LABELS,
    LM_MODES,
    TOP_K,
    TRL_MISSING,
    LMPair,
    LMWorkload,
    load_lm_workload,
)
from kdlab.bench.machine import describe_machine, machine_line
from kdlab.core.errors import ConfigError, KdlabError
from kdlab.reporting.table import format_table
from kdlab.training.precision import PRECISIONS, autocast_dtype

FORMAT = "kdlab-bench-lm"
TARGET = 1.15  # kdlab's step ÷ the floor's, at most, in both data modes
CPU = torch.device("cpu")
DEFAULTS_STEPS = 5  # the TRL-defaults row: at most this many timed steps, after 1 warm-up (its steps are slow)
SPLIT_COLUMNS = {"generate": "gen", "student_forward": "s fwd", "teacher_forward": "t fwd", "loss": "loss",
                 "student_backward": "s bwd", "optimizer": "optim", "other": "other"}  # fmt: skip


@dataclass(frozen=True)
class LMSettings:
    """How to measure: device, batch (None: the pair's), ``warmup`` untimed and ``steps`` timed steps per mode
    (None: the pair's; the TRL-defaults row: 1 and at most ``defaults_steps``), the modes (each pair runs those of
    its own that are named), kdlab's precision and compilation, ``top_k`` (``kdlab_cached``) and ``chunk_size``
    (``kdlab_chunked``);
    ``isolate``: each mode in its own process (False: in this one — tests; the memory figure is then the whole
    session's); ``rounds``: run every mode that many times, the modes interleaved, and pool the timed steps (on a
    small VM one process runs ±15 % faster or slower than the next)."""

    device: torch.device = CPU
    batch_size: int | None = None
    warmup: int | None = None
    steps: int | None = None
    defaults_steps: int = DEFAULTS_STEPS
    modes: tuple[str, ...] = LM_MODES
    precision: str = "auto"
    compile: bool = False
    seed: int = 0
    isolate: bool = True
    rounds: int = 1
    top_k: int = TOP_K
    chunk_size: int = CHUNK_SIZE

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first impossible setting."""
        positive = {"--batch": self.batch_size, "--steps": self.steps, "--rounds": self.rounds, "--top-k": self.top_k,
                    "--chunk-size": self.chunk_size}  # fmt: skip
        for name, value in positive.items():
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive; got {value}.")
        if self.warmup is not None and self.warmup < 0:
            raise ConfigError(f"--warmup must be 0 or more; got {self.warmup}.")
        unknown = [m for m in self.modes if m not in LM_MODES]
        if unknown or not self.modes:
            raise ConfigError(f"Unknown LM bench mode(s) {unknown}; valid modes: {', '.join(LM_MODES)}.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}.")

    def counts(self, pair: LMPair) -> tuple[int, int]:
        """The warm-up and timed steps per mode on ``pair``: the given ones, else the pair's."""
        return (pair.warmup if self.warmup is None else self.warmup, pair.steps if self.steps is None else self.steps)

    def for_mode(self, pair: LMPair, mode: str, cache_dir: Path | None = None) -> ModeSettings:
        batch, (warmup, steps) = self.batch_size or pair.batch_size, self.counts(pair)
        if mode == "trl_on_policy_defaults":
            return ModeSettings(self.device, batch, min(warmup, 1), min(steps, self.defaults_steps))
        return ModeSettings(self.device, batch, warmup, steps, self.precision, self.compile, self.top_k,
                            self.chunk_size, cache_dir)  # fmt: skip


def trl_installed() -> bool:
    """Whether TRL can be found (checked before starting a process that would only say it is missing)."""
    return importlib.util.find_spec("trl") is not None


def _spawn(mode: str, folder: Path, settings: ModeSettings, build: bool = False) -> dict[str, Any]:
    """Run ``mode`` in a fresh Python process on the workload saved in ``folder`` (``build``: only build its
    cache); its figures."""
    out = folder / f"{mode}{'-build' if build else ''}.json"
    cache = ["--cache-dir", str(settings.cache_dir)] if settings.cache_dir is not None else []
    command = [
        sys.executable, "-m", "kdlab.bench.lm_modes", mode, "--work", str(folder / "work"), "--out", str(out),
        "--device", str(settings.device), "--batch", str(settings.batch_size), "--warmup", str(settings.warmup),
        "--steps", str(settings.steps), "--precision", settings.precision, *(["--compile"] if settings.compile else []),
        "--top-k", str(settings.top_k), "--chunk-size", str(settings.chunk_size), *cache,
        *(["--build-cache"] if build else []),
    ]  # fmt: skip
    env = dict(os.environ)
    if settings.device.type == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # TRL's Trainer would take a GPU when there is one
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0 or not out.is_file():
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        what = f"{mode}'s cache build" if build else f"mode {mode}"
        raise KdlabError(f"kdlab bench lm: {what} failed (exit {done.returncode}):\n{tail}")
    return json.loads(out.read_text())


def _in_process(work: LMWorkload, mode: str, settings: ModeSettings, build: bool = False) -> dict[str, Any]:
    baseline = resident_bytes()
    figures = {"cache": build_cache(work, settings)} if build else run_mode(work, mode, settings)
    return figures | {"memory": peak_memory(settings.device, baseline), "threads": torch.get_num_threads()}


def pool(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One mode's figures over its rounds (one process each): every timed step, the split averaged, the highest
    peak memory, the median step of each round, the first round's checks."""
    if any("skipped" in raw for raw in rounds):
        return rounds[0]
    out = dict(rounds[0])
    out["seconds"] = [s for raw in rounds for s in raw["seconds"]]
    out["round_ms"] = [1000 * statistics.median(raw["seconds"]) for raw in rounds]
    if rounds[0].get("split_ms"):
        out["split_ms"] = {k: statistics.fmean(raw["split_ms"][k] for raw in rounds) for k in rounds[0]["split_ms"]}
    if rounds[0].get("memory"):
        out["memory"] = max((raw["memory"] for raw in rounds), key=lambda memory: memory["bytes"])
    return out


def _figures(mode: str, raw: dict[str, Any], settings: ModeSettings, tokens_per_step: int) -> dict[str, Any]:
    record: dict[str, Any] = {"label": LM_MODE_LABELS[mode], "skipped": raw.get("skipped"),
                              "warmup": settings.warmup, "steps": settings.steps}  # fmt: skip
    if record["skipped"]:
        return record
    seconds = raw["seconds"]
    median = statistics.median(seconds)
    return record | {
        "ms_per_step": 1000 * median,
        "tokens_per_s": tokens_per_step / median,
        "step_ms": {"median": 1000 * median, "min": 1000 * min(seconds), "max": 1000 * max(seconds)},
        "seconds": seconds,
        "round_ms": raw.get("round_ms"),
        "split_ms": raw.get("split_ms"),
        "memory": raw.get("memory"),
        "threads": raw.get("threads"),
        "checks": raw.get("checks"),
        "teacher": raw.get("teacher"),
    }


def ratios(modes: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Each kdlab and TRL mode's median step ÷ the floor's in the same data mode."""
    out = {}
    for mode, figures in modes.items():
        policy = "on_policy" if "on_policy" in mode else "supervised"
        floor = modes.get(f"floor_{policy}")
        if mode.startswith("floor_") or not floor or "ms_per_step" not in floor or "ms_per_step" not in figures:
            continue
        out[f"{mode}_per_floor"] = figures["ms_per_step"] / floor["ms_per_step"]
    return out


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bench_lm(
    pair: LMPair, settings: LMSettings, log: Callable[[str], None] = lambda _: None, work: LMWorkload | None = None
) -> dict[str, Any]:
    """Measure those of ``settings.modes`` that ``pair`` has; ``work`` replaces the pair's sequences and models
    (tests). ``kdlab_cached``'s cache is built first, in its own process (and timed), into a scratch folder that
    every round of that mode then reads."""
    chosen = [m for m in LM_MODES if m in settings.modes and m in pair.modes]
    if not chosen:
        raise ConfigError(f"The LM pair {pair.name} has none of the modes {list(settings.modes)}; its modes: "
                          f"{', '.join(pair.modes)}.")  # fmt: skip
    batch, (warmup, steps) = settings.batch_size or pair.batch_size, settings.counts(pair)
    if work is None:  # the kdlab modes take warm-up + 2 × steps batches (the timed pass and the split pass)
        what = "random token ids" if pair.random_ids else f"the stdlib corpus, its {pair.vocab_size}-token BPE"
        log(f"{pair.name}: {what} and the sequences")
        work = load_lm_workload(pair, batch * (warmup + 2 * steps), settings.seed)
    tokens_per_step = batch * work.input_ids.shape[1]
    raws: dict[str, list[dict[str, Any]]] = {mode: [] for mode in chosen}
    cache: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="kdlab-bench-lm-") as scratch:
        folder = Path(scratch)
        if settings.isolate:
            work.save(folder / "work")
        if "kdlab_cached" in chosen:
            ms = settings.for_mode(pair, "kdlab_cached", folder / "cache")
            log(f"{pair.name}: the top-{settings.top_k} teacher cache of kdlab_cached")
            built = _spawn("kdlab_cached", folder, ms, build=True) if settings.isolate else _in_process(
                work, "kdlab_cached", ms, build=True)  # fmt: skip
            cache = built["cache"] | {"memory": built["memory"]}
        for round_ in range(settings.rounds):  # the modes interleaved: a slow spell of the machine hits them all
            for mode in chosen:
                ms = settings.for_mode(pair, mode, folder / "cache")
                log(f"{pair.name}: {LM_MODE_LABELS[mode]}" + (f" (round {round_ + 1})" if settings.rounds > 1 else ""))
                if mode.startswith("trl_") and settings.isolate and not trl_installed():
                    raws[mode].append({"skipped": TRL_MISSING})
                elif settings.isolate:
                    raws[mode].append(_spawn(mode, folder, ms))
                else:
                    raws[mode].append(_in_process(work, mode, ms))
    modes = {mode: _figures(mode, pool(raws[mode]), settings.for_mode(pair, mode), tokens_per_step) for mode in chosen}
    return {
        "kind": "causal_lm",
        "name": pair.name,
        "teacher": {"name": pair.teacher_name, "parameters": _parameters(work.teacher)},
        "student": {"name": pair.student_name, "parameters": _parameters(work.student)},
        "data": pair.data_label,
        "vocab_size": work.vocab_size,
        "batch_size": batch,
        "prompt_length": work.prompt_length,
        "completion_length": work.completion_length,
        "tokens_per_step": tokens_per_step,
        "warmup": warmup,
        "steps": steps,
        "top_k": settings.top_k if "kdlab_cached" in chosen else None,
        "chunk_size": settings.chunk_size if "kdlab_chunked" in chosen else None,
        "cache": cache,
        "modes": modes,
        "ratios": ratios(modes),
        "target": TARGET,
    }


def run_lm_bench(
    pairs: Sequence[LMPair], settings: LMSettings, log: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Bench every LM pair; the record written as JSON (machine, settings, one entry per pair)."""
    settings.check()
    return record(settings, [bench_lm(pair, settings, log) for pair in pairs])


def record(settings: LMSettings, pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole record around the pairs' figures: the format, the machine and the settings."""
    dtype = autocast_dtype(settings.precision, settings.device)
    return {
        "format": FORMAT,
        "version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": describe_machine(settings.device),
        "settings": {
            "device": str(settings.device),
            "kdlab_precision": "fp32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast",
            "floor_precision": "fp32",
            "trl_precision": "fp32 (tuned); GKDConfig's default bf16 autocast (defaults)",
            "compile": settings.compile,
            "warmup": settings.warmup,  # None: each pair's (the pair's record says)
            "steps": settings.steps,
            "defaults_steps": settings.defaults_steps,
            "isolated": settings.isolate,
            "rounds": settings.rounds,
            "modes": [m for m in LM_MODES if m in settings.modes],
        },
        "pairs": pairs,
    }


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def pair_table(pair: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per mode: tokens/s, the median ms/step, × the floor, kdlab's split (ms), peak memory."""
    headers = ["mode", "tokens/s", "ms/step", "× floor", *(f"{v} ms" for v in SPLIT_COLUMNS.values()), "peak MiB",
               "+MiB"]  # fmt: skip
    rows = []
    for mode, figures in pair["modes"].items():
        if figures["skipped"]:
            rows.append([f"{figures['label']}: {figures['skipped']}", *["-"] * (len(headers) - 1)])
            continue
        ratio = pair["ratios"].get(f"{mode}_per_floor")
        split = figures["split_ms"]
        memory = figures["memory"] or {}
        baseline = memory.get("baseline_bytes")
        rows.append([
            figures["label"], f"{figures['tokens_per_s']:,.0f}", f"{figures['ms_per_step']:.1f}",
            "-" if ratio is None else f"{ratio:.2f}", *(f"{split[k]:.1f}" if split else "-" for k in SPLIT_COLUMNS),
            _mib(memory.get("bytes")), _mib(memory["bytes"] - baseline) if baseline else "-",
        ])  # fmt: skip
    return headers, rows


def pair_notes(pair: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """How it was timed, what the memory column means, the ratios against the target and the checks."""
    s, modes = result["settings"], pair["modes"]
    warmup, steps = pair["warmup"], pair["steps"]
    defaults = f" (TRL defaults: {min(warmup, 1)} + {min(steps, s['defaults_steps'])})" if any(
        m.startswith("trl_") for m in modes) else ""  # fmt: skip
    notes = [
        f"ms/step: median of {steps} timed step(s) after {warmup} warm-up step(s){defaults}, each step fenced by a "
        "device wait"
        + (
            f", in each of {s['rounds']} rounds (a fresh process per mode and round, the modes interleaved)"
            if s.get("rounds", 1) > 1
            else ""
        )
        + f"; tokens/s = {pair['batch_size']} × {pair['prompt_length'] + pair['completion_length']} tokens ÷ that "
        "median",
        f"split (kdlab only): the engine's phases over a second pass of {steps} steps, each phase fenced by a "
        "device wait; other = making the batch, zero_grad, the loss meter",
    ]
    if s["device"].startswith("cuda"):
        notes.append("peak MiB: torch.cuda.max_memory_allocated of the mode's own process")
    else:
        notes.append(
            "peak MiB: peak resident set (ru_maxrss) of the mode's whole process — Python, torch, transformers, the "
            "models and sequences (TRL modes: TRL, datasets, accelerate too); +MiB: above the resident set before "
            "the mode was built" + ("" if s["isolated"] else " (in-process run: the whole session's peak)")
        )
    cache = pair.get("cache")
    if cache:
        memory = cache["memory"]
        rise = f", +{_mib(memory['bytes'] - memory['baseline_bytes'])}" if memory.get("baseline_bytes") else ""
        per_token = cache["bytes"] / max(cache["tokens"], 1)
        notes.append(
            f"{modes['kdlab_cached']['label']}: the teacher's top-{cache['top_k']} log-probabilities "
            f"({cache['dtype']}) of {cache['tokens']:,} trained tokens, built in {cache['seconds']:.1f} s before "
            f"the timed processes (its own process, peak {_mib(memory['bytes'])}{rise} MiB) — "
            f"{cache['bytes'] / 2**20:.2f} MiB, {per_token:g} bytes a token; its steps read it (t fwd: gathering "
            "the batch's rows)"
        )
    if pair.get("chunk_size") is not None:
        notes.append(
            f"{modes['kdlab_chunked']['label']}: {pair['chunk_size']} trained positions a chunk (both models give "
            "hidden states; each chunk's logits made from the output heads, checkpointed)"
        )
    for policy, label in (("supervised", "supervised"), ("on_policy", "on-policy")):
        ratio = pair["ratios"].get(f"kdlab_{policy}_per_floor")
        if ratio is not None:
            verdict = "met" if ratio <= pair["target"] else "NOT met"
            notes.append(f"kdlab ÷ floor, {label}: {ratio:.2f}× (target ≤ {pair['target']:.2f}×: {verdict})")
    for mode in ("trl_supervised", "trl_on_policy", "trl_on_policy_defaults"):
        ratio = pair["ratios"].get(f"{mode}_per_floor")
        if ratio is not None:
            notes.append(f"{modes[mode]['label']} ÷ floor: {ratio:.2f}×")
    spread = [f"{f['label']} {min(f['round_ms']):.0f}–{max(f['round_ms']):.0f}" for f in modes.values()
              if len(f.get("round_ms") or ()) > 1]  # fmt: skip
    if spread:
        notes.append("the rounds' medians, lowest–highest (ms/step): " + "; ".join(spread))
    for figures in modes.values():
        checks = figures.get("checks") or {}
        if "trained_tokens_per_row" in checks:
            tokens = "/".join(map(str, checks["trained_tokens_per_row"]))
            notes.append(f"{figures['label']}: trains {tokens} completion tokens a row, "
                         f"{100 * checks['completion_replaced']:.0f} % of them not the data's")  # fmt: skip
    return notes


def lm_text(result: dict[str, Any]) -> str:
    """The record as plain text: the machine and settings, then per pair a heading, a table and the notes."""
    s = result["settings"]
    lines = [
        f"machine: {machine_line(result['machine'])}",
        f"device {s['device']} · kdlab {s['kdlab_precision']}{', compiled' if s['compile'] else ''} · floor "
        f"{s['floor_precision']} · TRL {s['trl_precision']} · "
        + ("each mode in its own process" if s["isolated"] else "every mode in this process"),
    ]
    blocks = ["\n".join(lines)]
    for pair in result["pairs"]:
        heading = (
            f"{pair['name']}: teacher {pair['teacher']['name']} ({pair['teacher']['parameters'] / 1e6:.2f} M "
            f"parameters) → student {pair['student']['name']} ({pair['student']['parameters'] / 1e6:.2f} M) · "
            f"{pair['data']} · batch {pair['batch_size']} × ({pair['prompt_length']} + "
            f"{pair['completion_length']}) tokens"
        )
        headers, rows = pair_table(pair)
        table = format_table(headers, rows, align="l" + "r" * (len(headers) - 1))
        blocks.append("\n".join([heading, table, *pair_notes(pair, result)]))
    return "\n\n".join(blocks)
