"""``kdlab bench``: measure every mode of the named pairs and gather the figures into one JSON-ready record.

Image pairs count images, text pairs examples (texts): a mode's record holds ``images_per_s`` or ``examples_per_s``
and the pair's ``unit`` says which.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from kdlab.bench.loops import AnyPair, AnyWorkload, build_cache, build_loop, pair_macs
from kdlab.bench.machine import describe_machine
from kdlab.bench.measure import Split, Throughput, split, throughput
from kdlab.bench.modes import MODE_LABELS, MODES
from kdlab.bench.pairs import load_workload
from kdlab.bench.reference import classic_backend
from kdlab.bench.text_pair import TextWorkload
from kdlab.bench.timing import synchronize
from kdlab.core.errors import ConfigError
from kdlab.core.files import write_json
from kdlab.training.engine import Recipe
from kdlab.training.precision import PRECISIONS, autocast_dtype
from kdlab.training.teachers import Teacher

H100_PEAK_TFLOPS = 989.0
H100_PEAK = "H100 SXM dense bf16"
FORMAT = "kdlab-bench"
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Settings:
    """How to measure. ``batch_size`` None: each pair's own. ``epochs`` None: each pair's own choice (one whole
    epoch for the Fashion-MNIST pairs, ``steps`` steps for the CIFAR ones); 0: ``steps`` steps for every pair;
    N > 0: N whole epochs. ``precision`` and ``compile`` apply to the kdlab modes (the reference is float32,
    eager). ``peak_tflops`` is the GPU peak that MFU divides by."""

    device: torch.device = CPU
    batch_size: int | None = None
    steps: int = 50
    warmup: int = 5
    epochs: int | None = None
    modes: tuple[str, ...] = MODES
    precision: str = "auto"
    compile: bool = False
    peak_tflops: float = H100_PEAK_TFLOPS
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first impossible setting."""
        positive = {"--batch": self.batch_size, "--steps": self.steps, "--peak-tflops": self.peak_tflops}
        for name, value in positive.items():
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive; got {value}.")
        for name, value in {"--warmup": self.warmup, "--epochs": self.epochs}.items():
            if value is not None and value < 0:
                raise ConfigError(f"{name} must be 0 or more; got {value}.")
        unknown = [m for m in self.modes if m not in MODES]
        if unknown or not self.modes:
            raise ConfigError(f"Unknown bench mode(s) {unknown}; valid modes: {', '.join(MODES)}.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}.")

    def pair_modes(self, pair: AnyPair) -> list[str]:
        """The modes to measure on ``pair``: the asked ones it has, in :data:`MODES` order."""
        return [m for m in MODES if m in self.modes and m in pair.modes]

    def peak_label(self) -> str:
        if self.peak_tflops == H100_PEAK_TFLOPS:
            return f"{H100_PEAK} ({H100_PEAK_TFLOPS:g} TFLOP/s, the default)"
        return f"{self.peak_tflops:g} TFLOP/s (given)"


def _flops_per_example(mode: str, teacher_macs: int, student_macs: int) -> int:
    """FLOPs (2 per multiply-add) of one training example: the teacher's forward when it runs, and the student's
    forward + backward (≈ 3 forwards)."""
    teacher = teacher_macs if mode in ("online", "tinybert", "reference") else 0
    return 2 * (teacher + 3 * student_macs)


def bench_pair(
    pair: AnyPair, settings: Settings, log: Callable[[str], None] = lambda _: None, work: AnyWorkload | None = None
) -> dict[str, Any]:
    """Measure ``settings.modes`` on ``pair``; ``work`` replaces the pair's data and models (tests)."""
    device, unit = settings.device, pair.unit
    batch_size = settings.batch_size or pair.batch_size
    epochs = pair.timed_epochs if settings.epochs is None else settings.epochs
    if work is None:  # timing steps needs only the examples those steps see
        work = load_workload(pair, None if epochs else batch_size * (settings.warmup + settings.steps), settings.seed)
    *macs, macs_tokens = pair_macs(work, batch_size)
    teacher = Teacher(copy.deepcopy(work.teacher)).to(device)
    recipe = Recipe(max(epochs, 1), pair.optim, work.seed, precision=settings.precision, compile=settings.compile)
    cache, cache_build_s, modes = None, None, {}
    with tempfile.TemporaryDirectory(prefix="kdlab-bench-") as scratch:
        for mode in settings.pair_modes(pair):
            if mode == "cached":
                log(f"{pair.name}: building the teacher-output cache of {len(work):,} {unit}")
                synchronize(device)
                start = time.perf_counter()
                folder = Path(scratch) / "cache"  # a fresh build, timed, removed afterwards
                cache = build_cache(
                    teacher, work, folder, batch_size=batch_size, device=device, precision=settings.precision
                )
                synchronize(device)
                cache_build_s = time.perf_counter() - start
            log(f"{pair.name}: {MODE_LABELS[mode]}")
            loop = build_loop(
                work, mode, device=device, batch_size=batch_size, recipe=recipe, teacher=teacher, cache=cache
            )
            with classic_backend() if mode == "reference" else contextlib.nullcontext():
                timed = throughput(loop, device, warmup=settings.warmup, steps=settings.steps, epochs=epochs)
                parts = split(loop, device, warmup=settings.warmup, steps=settings.steps, first_epoch=epochs + 1)
            modes[mode] = _figures(mode, pair, settings, timed, parts, (macs[0], macs[1]), loop.summary())
    record = {
        "name": pair.name,
        "teacher": {"name": pair.teacher_name, "macs": macs[0]},
        "student": {"name": pair.student_name, "macs": macs[1]},
        "data": pair.data_label,
        "unit": unit,
        unit: len(work),
        "train_size": pair.train_size,
        "batch_size": batch_size,
        "recipe_epochs": pair.recipe_epochs,
        "cache_build_s": cache_build_s,
        "modes": modes,
        "ratios": ratios(modes, unit),
    }
    if isinstance(work, TextWorkload):  # what kdlab pays once, before training: one tokenisation of the texts
        record.update(macs_tokens=macs_tokens, tokenize_s=work.tokenize_s)
    return record


def _figures(
    mode: str,
    pair: AnyPair,
    settings: Settings,
    timed: Throughput,
    parts: Split,
    macs: tuple[int, int],
    train: dict[str, float],
) -> dict[str, Any]:
    """One mode's record: speed, the epoch (measured, or extrapolated from the timed steps), the split, MFU on a
    GPU and the projected length of the pair's published recipe."""
    flops, rate, unit = _flops_per_example(mode, *macs), timed.examples_per_s, pair.unit
    return {
        "label": MODE_LABELS[mode],
        f"{unit}_per_s": rate,
        "ms_per_step": timed.ms_per_step,
        "timed": {"steps": timed.steps, unit: timed.examples, "seconds": timed.seconds, "epochs": timed.epochs},
        "epoch_s": timed.seconds / timed.epochs if timed.epochs else pair.train_size / rate,
        "epoch_measured": bool(timed.epochs),
        "split_ms": parts.ms_per_step(),
        "split_steps": parts.steps,
        f"flops_per_{unit.removesuffix('s')}": flops,
        "mfu": rate * flops / (settings.peak_tflops * 1e12) if settings.device.type == "cuda" else None,
        "projected_recipe_h": pair.recipe_epochs * pair.train_size / rate / 3600 if pair.recipe_epochs else None,
        "train": train,
    }


def ratios(modes: dict[str, dict[str, Any]], unit: str = "images") -> dict[str, float]:
    """Epoch time of KD over the student alone; kdlab's images/s (examples/s) over the reference loop's; the step
    of TinyBERT (feature taps) over the step of KD, both with the teacher online."""
    out, rate = {}, f"{unit}_per_s"
    for mode in ("cached", "online"):
        if mode in modes and "student" in modes:
            out[f"{mode}_epoch_per_student_epoch"] = modes[mode]["epoch_s"] / modes["student"]["epoch_s"]
        if mode in modes and "reference" in modes:
            out[f"{mode}_speedup_over_reference"] = modes[mode][rate] / modes["reference"][rate]
    if "tinybert" in modes and "online" in modes:
        out["tinybert_step_per_online_step"] = modes["tinybert"]["ms_per_step"] / modes["online"]["ms_per_step"]
    return out


def run_bench(
    pairs: Sequence[AnyPair], settings: Settings, log: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Bench every pair; returns the record written as JSON (machine, settings, one entry per pair)."""
    settings.check()
    for pair in pairs:
        if not settings.pair_modes(pair):
            raise ConfigError(
                f"Bench pair {pair.name!r} has none of the modes {', '.join(settings.modes)}; its modes: "
                f"{', '.join(pair.modes)}."
            )
    dtype = autocast_dtype(settings.precision, settings.device)
    return {
        "format": FORMAT,
        "version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": describe_machine(settings.device),
        "settings": {
            "device": str(settings.device),
            "kdlab_precision": "fp32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast",
            "reference_precision": "fp32",
            "compile": settings.compile,
            "warmup": settings.warmup,
            "steps": settings.steps,
            "epochs": settings.epochs,
            "batch_size": settings.batch_size,
            "peak_tflops": settings.peak_tflops,
            "peak": settings.peak_label(),
            "modes": [m for m in MODES if any(m in settings.pair_modes(pair) for pair in pairs)],
        },
        "pairs": [bench_pair(pair, settings, log) for pair in pairs],
    }


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` as JSON, atomically (a temporary file renamed into place)."""
    write_json(path, result)
