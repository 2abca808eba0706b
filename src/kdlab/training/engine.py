"""THE training loop — one for ``kdlab train`` and ``kdlab distill``, for every method.

Per batch: student forward (with feature taps), teacher outputs (online or precomputed), the
method's named loss terms, one backward, one optimiser step. The loss terms are summed on the
device; the host reads them every ``SYNC_EVERY`` steps and at the end of each epoch, never per step.

Nothing is lost: a checkpoint is written atomically after every epoch; the first Ctrl-C finishes
the current step, saves the exact mid-epoch state and stops; a resumed run replays the same batches
(see :class:`kdlab.data.loader.TensorLoader`) and, on CPU, ends with bit-identical weights. A
non-finite loss stops the run and keeps the last good checkpoint.

Under ``torchrun`` (:mod:`kdlab.training.distributed`) the student is wrapped in DistributedDataParallel — the
teacher never —
and each process trains on its piece of every global batch, its loss weighted so that the averaged gradient is the
one-process gradient; the method's trainable parts (regressors, embeddings) have their gradients averaged by one
flat all-reduce after the backward pass (they are small, and DDP would also broadcast their buffers every step,
e.g. CRD's memory banks). The meter is summed over the processes when it is read; rank 0 alone writes checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from kdlab.core import files
from kdlab.core.batch import Batch, feed
from kdlab.core.errors import CheckpointError, ConfigError, Interrupted, TrainingStopped
from kdlab.core.outputs import ModelOutput, as_model_output
from kdlab.training import distributed
from kdlab.training.meter import Meter
from kdlab.training.optim import OptimConfig, build_optimizer, build_schedule
from kdlab.training.precision import autocast_dtype
from kdlab.training.progress import Progress
from kdlab.training.taps import Taps

SYNC_EVERY = 50
STATE_KEYS = ("epoch", "step", "elapsed", "student", "method", "optimizer", "schedule", "rng", "meter", "history")


class BatchSource(Protocol):
    def __len__(self) -> int: ...
    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]: ...


TeacherSource = Callable[[Batch], ModelOutput]
Phases = Callable[[str], contextlib.AbstractContextManager[Any]]  # name → a context that times that part of a step


@dataclass
class Recipe:
    """How to train: epochs, optimiser, seed, evaluation period; ``precision`` of the forward passes
    (``auto``: bf16 autocast on CUDA, fp32 on CPU; losses always take their softmax/KL in float32) and
    ``compile`` the student with ``torch.compile`` (after its feature taps are registered); ``fsdp``: under torchrun
    shard the student (:func:`kdlab.training.distributed.shard`) instead of wrapping it in DDP."""

    epochs: int
    optim: OptimConfig
    seed: int = 0
    eval_every: int = 1
    precision: str = "auto"
    compile: bool = False
    fsdp: bool = False  # under torchrun: shard the student with FSDP instead of replicating it with DDP


def _no_phase(name: str) -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext()


class _StopRequest:
    """Turns the first Ctrl-C into a request to stop after the current step (a second one aborts)."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[_StopRequest]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum: int, frame: object) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


@dataclass
class Engine:
    """Trains ``student`` with ``method`` on ``train`` batches; see the module docstring. ``on_epoch`` (which
    writes the metrics) and the progress bar run on rank 0 only."""

    student: nn.Module
    method: nn.Module
    train: BatchSource
    recipe: Recipe
    state_path: Path
    teacher: TeacherSource | None = None
    evaluate: Callable[[], dict[str, float]] | None = None
    on_epoch: Callable[[list[dict[str, Any]]], None] | None = None
    hooks: list[Callable[[Engine, int, int], None]] = field(default_factory=list)
    progress: bool = True
    label: str = "train"
    stop: _StopRequest = field(default_factory=_StopRequest)
    phases: Phases = _no_phase  # `kdlab bench` times the parts of a step through this

    def __post_init__(self) -> None:
        self.device = next(self.student.parameters()).device
        self.history: list[dict[str, Any]] = []
        self.dtype = autocast_dtype(self.recipe.precision, self.device)
        # tensor cores want NHWC; on CPU oneDNN's backward is not reliably faster, so only on CUDA
        self.channels_last = self.device.type == "cuda"
        if self.channels_last:
            self.student.to(memory_format=torch.channels_last)
        layers = tuple(getattr(self.method, "student_layers", ()))
        self.taps = Taps(self.student, layers, owner="student") if layers else None  # hooks before compile
        self.world = distributed.world_size()
        if self.world > 1:
            self.train = self._shard(self.train)
            distributed.broadcast_module(self.method)  # DDP does this for the student
        model = distributed.parallel(self.student, fsdp=self.recipe.fsdp)  # the student itself in one process
        self.replicas = model if isinstance(model, nn.parallel.DistributedDataParallel) else None
        # torch's advice for DDP: compile the wrapped module (its optimizer splits graphs at the gradient buckets)
        self.forward: Callable[[torch.Tensor], Any] = torch.compile(model) if self.recipe.compile else model
        params = [*self.student.parameters(), *self.method.parameters()]
        self.optimizer = build_optimizer(params, self.recipe.optim)
        self.schedule = build_schedule(
            self.optimizer, self.recipe.optim, steps_per_epoch=len(self.train), epochs=self.recipe.epochs
        )
        # fp16 needs loss scaling; its inf check reads one flag on the host per step (bf16 needs neither)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    @staticmethod
    def _shard(train: BatchSource) -> BatchSource:
        shard = getattr(train, "shard", None)
        if shard is None:
            raise ConfigError(
                f"The training batches ({type(train).__name__}) cannot be split across processes; torchrun runs "
                "train on in-memory image data (TensorLoader). Launch this run as one process."
            )
        return shard(distributed.rank(), distributed.world_size())

    def _weight(self, batch: Batch | list[Batch]) -> float:
        """The factor on this process's loss (1 in one process); see :func:`kdlab.training.distributed.loss_weight`.
        A piece whose loss is already its share of the global loss (``global_share``) only undoes the averaging."""
        batch = batch[0] if isinstance(batch, list) else batch
        if getattr(batch, "global_share", False):
            return float(self.world)
        size = getattr(batch, "global_size", None)
        return 1.0 if size is None else distributed.loss_weight(len(batch), size, self.world)

    def request_stop(self) -> None:
        """Stop after the current step, as the first Ctrl-C does."""
        self.stop.requested = True

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(self, batch: Batch | list[Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One optimisation step on ``batch`` — or on a gradient-accumulation window, a list of micro-batches whose
        losses are each a share of the window's (the language-model losses divide by the window's token count) and
        whose gradients add up before the one optimiser step. A method may replace the batches first
        (``prepare_batches``: on-policy distillation samples completions). Returns the summed loss and its named
        terms (on the device — nothing here waits for the device, except fp16's loss-scale check)."""
        micros = batch if isinstance(batch, list) else [batch]
        prepare = getattr(self.method, "prepare_batches", None)
        if prepare is not None:
            with self.phases("generate"), self._autocast():  # generation in the precision of the forward passes
                micros = prepare(micros)
        self.optimizer.zero_grad(set_to_none=True)
        loss, terms = self._accumulate(micros[0], sync=len(micros) == 1)
        for i, micro in enumerate(micros[1:], start=2):
            more_loss, more = self._accumulate(micro, sync=i == len(micros))
            loss = loss + more_loss
            terms = {k: terms.get(k, 0) + more.get(k, 0) for k in terms | more}
        distributed.average_gradients(self.method.parameters())  # DDP has averaged the student's
        with self.phases("optimizer"):
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.step()
        return loss, terms

    def _accumulate(self, batch: Batch, sync: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward passes, loss terms and backward pass of one (micro-)batch; the gradients add to the ones there.
        Under DDP only the window's last micro-batch (``sync``) averages the gradients over the processes."""
        if not sync and self.replicas is not None:
            with self.replicas.no_sync():
                return self._accumulate(batch)
        x = batch.x
        images = isinstance(x, torch.Tensor) and x.dim() == 4
        if self.channels_last and images:
            x = x.contiguous(memory_format=torch.channels_last)
        elif self.world > 1 and images and x.stride(1) != x.shape[2] * x.shape[3]:
            # cropped batches come channels-last strided (even 1-channel ones, which count as contiguous); the conv
            # weight gradients would then not match the layout of DDP's buckets
            x = x.clone(memory_format=torch.contiguous_format)
        with self.phases("student_forward"), self._autocast():
            # logits, a ModelOutput (structured models add their potentials), or anything the adapter reads
            student = as_model_output(feed(self.forward, x), model="The student")
            if self.taps:
                student.features = self.taps.collect()
        needs_teacher = getattr(self.method, "needs_teacher", False)
        with self.phases("teacher_forward"), self._autocast():
            teacher = self.teacher(batch) if needs_teacher and self.teacher is not None else None
        with self.phases("loss"), self._autocast():
            terms = self.method(student, teacher, batch)
            loss = torch.stack([t.float() for t in terms.values()]).sum()
        with self.phases("student_backward"):
            weight = self._weight(batch)
            self.scaler.scale(loss * weight if weight != 1.0 else loss).backward()
        return loss, terms

    def fit(self, resume: bool = False) -> list[dict[str, Any]]:
        """Train to ``recipe.epochs``; with ``resume``, continue from the saved state if there is one."""
        epoch, start, elapsed, meter = 0, 0, 0.0, Meter()
        if resume and distributed.broadcast_object(Path(self.state_path).is_file()):  # rank 0's view decides
            epoch, start, elapsed = self._restore(meter)
        else:  # one stream per process (dropout masks, method draws); rank 0's is the one-process stream
            torch.manual_seed(self.recipe.seed + distributed.rank())
        steps, total = len(self.train), self.recipe.epochs * len(self.train)
        bar = Progress(
            total, initial=epoch * steps + start, label=self.label, enabled=self.progress and distributed.is_main()
        )
        began = time.perf_counter() - elapsed
        try:
            with self.stop.installed():
                for epoch in range(epoch, self.recipe.epochs):  # noqa: B020  (resumes mid-run)
                    self.student.train()
                    self.method.train()
                    if hasattr(self.method, "start_epoch"):
                        self.method.start_epoch(epoch, self.recipe.epochs)
                    for step, batch in enumerate(self.train.epoch(epoch, start), start=start):
                        loss, terms = self.step(batch)
                        meter.add(terms, loss, step, self._weight(batch))
                        bar.update(1)
                        if (step + 1) % SYNC_EVERY == 0:
                            means, bad = meter.read()
                            self._check(bad, epoch, means)
                            bar.note(epoch=epoch + 1, loss=f"{means['loss']:.4f}")
                        for hook in self.hooks:
                            hook(self, epoch, step)
                        if self._stopping(step):
                            self._save(epoch, step + 1, meter, time.perf_counter() - began)
                            raise Interrupted(
                                f"Interrupted at epoch {epoch + 1}, step {step + 1}; the state is saved in "
                                f"{self.state_path}."
                            )
                    start = 0
                    self._end_epoch(epoch, meter, time.perf_counter() - began, bar)
        finally:
            bar.close()
        return self.history

    def _stopping(self, step: int) -> bool:
        """Whether to stop after ``step``. Under torchrun every rank must stop at the same step, so a request is
        shared at the meter's sync points (every SYNC_EVERY steps) rather than costing a host sync per step."""
        if self.world == 1:
            return self.stop.requested
        return (step + 1) % SYNC_EVERY == 0 and distributed.any_rank(self.stop.requested)

    def _end_epoch(self, epoch: int, meter: Meter, elapsed: float, bar: Progress) -> None:
        means, bad = meter.read()
        self._check(bad, epoch, means)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train": means,
            "time_s": round(elapsed, 3),
        }
        if self.evaluate and ((epoch + 1) % self.recipe.eval_every == 0 or epoch + 1 == self.recipe.epochs):
            record["val"] = self.evaluate()
            bar.note(
                epoch=epoch + 1,
                loss=f"{means.get('loss', math.nan):.4f}",
                **{k: f"{v:.4f}" for k, v in record["val"].items() if k in ("accuracy", "agreement")},
            )
        else:
            bar.note(epoch=epoch + 1, loss=f"{means.get('loss', math.nan):.4f}")
        bar.epoch_done()
        self.history.append(record)
        if self.on_epoch and distributed.is_main():
            self.on_epoch(self.history)
        self._save(epoch + 1, 0, Meter(), elapsed)
        meter.reset()

    def _check(self, bad: int, epoch: int, means: dict[str, float]) -> None:
        if bad < 0:
            return
        broken = ", ".join(k for k, v in means.items() if not math.isfinite(v) and k != "loss") or "loss"
        raise TrainingStopped(
            f"The loss became non-finite (NaN or Inf) at epoch {epoch + 1}, step {bad + 1} (terms: {broken}); "
            f"training stopped. The last good checkpoint is kept in {self.state_path} (after epoch {epoch}). "
            "Lower optim.lr, check the inputs for NaN, or use a smaller temperature."
        )

    def _rng(self) -> dict[str, torch.Tensor | None]:
        cuda = self.device.type == "cuda"
        return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(self.device) if cuda else None}

    def _save(self, epoch: int, step: int, meter: Meter, elapsed: float) -> None:
        """Checkpoint the run; under torchrun every rank calls it (the meter and the random states are gathered)
        and rank 0 writes."""
        meter_state = meter.state()
        ranks_rng = distributed.all_gather_object(self._rng()) if self.world > 1 else None
        student_state, optimizer_state = distributed.full_state(self.student, self.optimizer)  # FSDP: gathered
        if not distributed.is_main():
            return
        state = {
            "format": "kdlab-state",
            "version": 1,
            "epoch": epoch,
            "step": step,
            "elapsed": elapsed,
            "student": student_state,
            "method": self.method.state_dict(),
            "optimizer": optimizer_state,
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": torch.get_rng_state(),
            "meter": meter_state,
            "history": self.history,
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            **({"rank_rng": ranks_rng} if ranks_rng else {}),  # each process's own streams
        }
        files.save(state, Path(self.state_path))

    def _restore(self, meter: Meter) -> tuple[int, int, float]:
        path = Path(self.state_path)
        state = files.load(path, what="training state")
        missing = [k for k in STATE_KEYS if k not in state]
        if state.get("format") != "kdlab-state" or missing:
            raise CheckpointError(
                f"{path} is not a kdlab training state (missing: {', '.join(missing) or 'the format mark'}); it is "
                f"damaged or was written by something else. Delete it to train this run again from the start."
            )
        try:
            distributed.load_full_state(self.student, self.optimizer, state["student"], state["optimizer"])
            self.method.load_state_dict(state["method"])
            self.schedule.load_state_dict(state["schedule"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(
                f"The training state {path} does not fit this run ({str(exc).splitlines()[0]}): it was saved by "
                "another model or method, or is damaged. Delete it to train this run again from the start."
            ) from None
        torch.set_rng_state(state["rng"])
        if state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        mine = state.get("rank_rng") or []
        if self.world > 1 and len(mine) == self.world:  # the same number of processes: each resumes its streams
            torch.set_rng_state(mine[distributed.rank()]["cpu"])
            if mine[distributed.rank()]["cuda"] is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(mine[distributed.rank()]["cuda"], self.device)
        meter.load(state["meter"], self.device)
        self.history = list(state["history"])
        return state["epoch"], state["step"], state["elapsed"]
