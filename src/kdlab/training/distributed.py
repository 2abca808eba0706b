"""Multi-process data parallelism under ``torchrun``: the process group and the few collectives kdlab needs.

``torchrun`` starts one process per device and gives each ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and the
rendezvous address). :func:`initialize` joins the group — gloo for CPU training, NCCL with one GPU per process
(``cuda:LOCAL_RANK``) for CUDA. :func:`rank`, :func:`world_size` and :func:`is_main` describe the launch from the
first line of the program on; without torchrun they are 0, 1 and True, and every collective below is the
single-process identity, so code calls them unconditionally. Collectives under torchrun need :func:`initialize`
first (a barrier that silently did nothing would let the ranks race).

Division of work, see ``docs/distributed.md``: rank 0 decides (folder names) and writes (files, index); every rank
trains on its part of each batch and evaluates its block of batches; results are gathered to every rank.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from kdlab.core.errors import ConfigError, Interrupted, KdlabError, TrainingStopped
from kdlab.data.loader import part_bounds

T = TypeVar("T")
_OPS = {"sum": "SUM", "min": "MIN", "max": "MAX"}
_device: torch.device | None = None  # the device chosen by initialize()


def _env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def launched() -> bool:
    """Whether this process is one of several started by torchrun (``WORLD_SIZE`` > 1)."""
    return _env("WORLD_SIZE", 1) > 1


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without torchrun)."""
    return dist.get_rank() if _active() else _env("RANK", 0)


def world_size() -> int:
    """The number of processes (1 without torchrun)."""
    return dist.get_world_size() if _active() else _env("WORLD_SIZE", 1)


def local_rank() -> int:
    """This process's rank on its machine: the index of its GPU."""
    return _env("LOCAL_RANK", 0)


def is_main() -> bool:
    """True on rank 0, the process that decides and writes (and in a single-process run)."""
    return rank() == 0


def initialize(device: torch.device) -> torch.device:
    """Join torchrun's process group (once per process) and return this rank's training device.

    ``device`` is the configured one: a CPU run uses gloo; a CUDA run uses NCCL and ``cuda:LOCAL_RANK`` (so the
    configuration says ``device=cuda`` or ``auto``, not a numbered GPU). Without torchrun ``device`` comes back
    unchanged and nothing is initialised."""
    global _device
    if not launched():
        return device
    if _device is not None:
        if device.type != _device.type:
            raise ConfigError(f"This torchrun process already trains on {_device}; it cannot switch to {device}.")
        return _device
    if device.type == "cuda":
        if device.index is not None:
            raise ConfigError(
                f"device={device} names one GPU, but under torchrun each process uses cuda:LOCAL_RANK; "
                "give device=cuda (or auto) and choose the GPUs with CUDA_VISIBLE_DEVICES."
            )
        if local_rank() >= torch.cuda.device_count():
            raise ConfigError(
                f"torchrun started local rank {local_rank()}, but this machine has {torch.cuda.device_count()} "
                "CUDA device(s); give --nproc_per_node at most that."
            )
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    elif device.type == "cpu":
        dist.init_process_group("gloo")
    else:
        raise ConfigError(f"torchrun runs on CPU (gloo) or CUDA GPUs (NCCL); device={device} is neither.")
    _device = device
    return device


def shutdown() -> None:
    """Leave the process group (at the end of the program); a no-op when there is none."""
    global _device
    if _active():
        dist.destroy_process_group()
    _device = None


def _group() -> bool:
    """True when collectives must run; an uninitialised torchrun process is a programming error."""
    if world_size() == 1:
        return False
    if not _active():
        raise RuntimeError(
            "kdlab.training.distributed.initialize(device) must be called before collectives under torchrun."
        )
    return True


def _comm_device() -> torch.device:
    """Where small helper tensors live: NCCL communicates CUDA tensors, gloo CPU ones."""
    return _device if _device is not None and dist.get_backend() == "nccl" else torch.device("cpu")


def barrier() -> None:
    """Wait until every rank gets here (e.g. rank 0 has finished writing a file the others will read)."""
    if _group():
        dist.barrier()


def all_reduce(tensor: torch.Tensor, op: Literal["sum", "min", "max"] = "sum") -> torch.Tensor:
    """``tensor`` reduced over the ranks, in place (and returned); on the training device, no host sync."""
    if _group():
        dist.all_reduce(tensor, op=getattr(dist.ReduceOp, _OPS[op]))
    return tensor


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any one (a host sync: call it rarely)."""
    if not _group():
        return flag
    return bool(all_reduce(torch.tensor([int(flag)], device=_comm_device()), "max").item())


def _padded(tensor: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """``tensor`` padded along dim 0 to the longest rank's length, and every rank's length."""
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    lengths = [int(s) for s in torch.cat(sizes).tolist()]
    padded = tensor.new_zeros((max(lengths), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    return padded, lengths


def all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` concatenated along dim 0 in rank order, on every rank; lengths may differ
    (e.g. evaluation logits ``[n_r, c]``). The other dimensions must agree."""
    if not _group():
        return tensor
    padded, lengths = _padded(tensor.contiguous())
    parts = [torch.empty_like(padded) for _ in lengths]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, lengths, strict=True)])


def gather(tensor: torch.Tensor, dst: int = 0) -> torch.Tensor | None:
    """Like :func:`all_gather`, but only rank ``dst`` receives the concatenation; the others get None."""
    if not _group():
        return tensor
    padded, lengths = _padded(tensor.contiguous())
    parts = [torch.empty_like(padded) for _ in lengths] if rank() == dst else None
    dist.gather(padded, parts, dst=dst)
    return None if parts is None else torch.cat([part[:n] for part, n in zip(parts, lengths, strict=True)])


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` (any picklable value, e.g. a run folder name) on every rank."""
    if not _group():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: T) -> list[T]:
    """Every rank's picklable ``obj``, in rank order, on every rank."""
    if not _group():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 only; its result — or the :class:`KdlabError` it raised — reaches every rank, so a
    decision that reads or writes files (a fresh folder name, a folder claim) is made once and never diverges."""
    if not _group():
        return fn()
    outcome: tuple[bool, Any] = (True, None)
    if is_main():
        try:
            outcome = (True, fn())
        except Exception as exc:
            broadcast_object((False, exc if isinstance(exc, KdlabError) else None))
            exc.raised_on_main = True  # type: ignore[attr-defined]
            raise
    ok, value = broadcast_object(outcome)
    if ok:
        return value
    if value is None:
        raise RuntimeError("rank 0 failed (see its traceback); this rank stops too.")
    value.raised_on_main = True  # rank 0 reports it
    raise value


def shared_error(exc: BaseException) -> bool:
    """Whether every rank raised ``exc`` at the same point of the program: the configuration's errors (every rank
    reads the same one), rank 0's decisions (:func:`on_main`) and agreed stops. Rank 0 reports those; another rank
    reports only an error of its own."""
    return isinstance(exc, ConfigError | TrainingStopped | Interrupted) or getattr(exc, "raised_on_main", False)


def settle() -> None:
    """A barrier for the way out after a shared error: no rank exits (and so makes torchrun stop the others)
    before rank 0 has reported it. It never raises: a rank that is gone already just ends the wait. Before the
    group exists (a configuration error) the other ranks give rank 0 a moment instead."""
    try:
        if _active():
            dist.barrier()
        elif not is_main():
            time.sleep(1.0)
    except Exception:  # the error being reported matters, not this one
        pass


def parallel(module: nn.Module, *, fsdp: bool = False) -> nn.Module:
    """``module`` wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` (which broadcasts rank 0's
    parameters and buffers now and averages gradients in the backward pass) — or, with ``fsdp``, sharded in place
    by :func:`shard`; ``module`` itself in one process."""
    if not _group():
        return module
    if fsdp:
        return shard(module)
    device = next(module.parameters()).device
    return nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def shard(module: nn.Module) -> nn.Module:
    """``module`` sharded over the processes with PyTorch's FSDP (``fully_shard``, in place): each block a Hugging
    Face model names in ``_no_split_modules`` (a transformer layer) is one unit, gathered for its forward and
    backward passes and resharded after, and the rest of the model is the root unit. Parameters, gradients and the
    optimiser's state are then split over the processes; gradients are averaged as under DDP. Every process must
    run the same forward passes (FSDP gathers each unit from all of them)."""
    from torch.distributed.fsdp import fully_shard

    blocks = set(getattr(module, "_no_split_modules", None) or ())
    for sub in module.modules():
        if sub is not module and type(sub).__name__ in blocks:
            fully_shard(sub)
    fully_shard(module)
    return module


def is_sharded(module: nn.Module) -> bool:
    """Whether ``module`` was sharded by :func:`shard`."""
    return any(type(m).__name__.startswith("FSDP") for m in module.modules())


def gathered_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s whole state dict on every process: gathered from the shards under FSDP (a collective: every
    process calls it), the state dict itself otherwise."""
    if not is_sharded(module):
        return module.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True))


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model's and the optimiser's whole state dicts (for a checkpoint): as they are in one process or under
    DDP; gathered from the shards under FSDP — a collective, on rank 0 only (the others get empty dicts)."""
    if not is_sharded(model):
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, optimizer, options=options)


def load_full_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict[str, Any], optimizer_state: dict[str, Any]
) -> None:
    """Load what :func:`full_state` saved (every process reads the whole state and keeps its shards)."""
    if not is_sharded(model):
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, model_state, options=options)
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers of ``module`` into every rank's (once, before training)."""
    if _group():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=src)


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Average the ``.grad`` of ``parameters`` over the ranks in place — one flat all-reduce per dtype. Every
    rank must hold gradients for the same parameters (the same code ran on same-shaped batches)."""
    if not _group():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    for dtype in {g.dtype for g in grads}:
        group = [g for g in grads if g.dtype == dtype]
        flat = torch.cat([g.reshape(-1) for g in group])
        all_reduce(flat).div_(world_size())
        for grad, chunk in zip(group, flat.split([g.numel() for g in group]), strict=True):
            grad.copy_(chunk.view_as(grad))


def block(count: int) -> range:
    """This rank's contiguous share of ``count`` items (e.g. evaluation batches)."""
    return range(*part_bounds(count, rank(), world_size()))


def loss_weight(local: int, total: int, parts: int) -> float:
    """The factor on a rank's mean loss over ``local`` of a global batch's ``total`` samples, split in ``parts``:
    DDP averages the ranks' gradients, so ``parts · local / total`` makes that average the gradient of the mean
    loss over the whole batch — also when the batch does not split evenly."""
    return parts * local / total
