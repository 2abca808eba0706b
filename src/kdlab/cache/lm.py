"""The teacher-output cache of a language-model run: the teacher's top-k next-token log-probabilities at every trained
position, with the rest of its probability mass kept as one tail value.

Per next-token target (the positions a run trains, in sequence and position order): the k largest entries of the
teacher's full-vocabulary ``log_softmax(z / τ)`` (values in float16 or bfloat16, ids in int32) and ``log`` of the
mass outside them (float32; −inf at k = V). The layout, checksums and atomic build are the cache's own
(:mod:`kdlab.cache.store`, one "sample" per target, one view). The key holds the teacher's weights, the token
sequences, k, τ, the value dtype, the teacher's precision and the alignment (``next-token``: the log-probabilities at
position t are the teacher's prediction of token t + 1), so a cache computed at another temperature or alignment is
stale and rebuilt, never reused. Bytes per trained token: ``k · (4 + 2) + 4`` (:func:`bytes_per_token`).

A batch's rows are found from the sequences' target offsets, computed from the host lengths: no device read.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from kdlab.cache.key import FORMAT, tensor_digest, weights_digest
from kdlab.cache.store import CachedOutputs, CacheWriter, open_cache, valid_cache
from kdlab.core.batch import Batch
from kdlab.core.outputs import ModelOutput
from kdlab.data.lm import LMLoader, LMTokens
from kdlab.losses.tokens import next_token_targets, prediction_logits
from kdlab.training.teachers import Teacher

ALIGNMENT = "next-token"  # row t of a sequence holds the teacher's distribution of token t + 1
DTYPES = {"float16": 2, "bfloat16": 2, "float32": 4}
Log = Callable[[str], None]


def bytes_per_token(top_k: int, dtype: str = "float16") -> int:
    """Bytes a cache stores per trained token: k ids (int32) and k values (``dtype``) and one float32 tail."""
    return top_k * (4 + DTYPES[dtype]) + 4


def target_offsets(tokens: LMTokens) -> torch.Tensor:
    """``[N + 1]`` int64 (on the host): sequence i's targets are the cache's rows ``offsets[i]:offsets[i + 1]``."""
    counts = (tokens.lengths - tokens.prompt_lengths.clamp(min=1)).clamp(min=0)
    return torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])


def lm_cache_key(
    teacher: torch.nn.Module, tokens: LMTokens, *, top_k: int, temperature: float, dtype: str, precision: str
) -> dict[str, Any]:
    """Every input that determines the cached rows."""
    sequences = {"input_ids": tokens.input_ids, "lengths": tokens.lengths, "prompt_lengths": tokens.prompt_lengths}
    return {
        "format": FORMAT,
        "kind": "causal_lm",
        "teacher_weights": weights_digest(teacher),
        "data": tensor_digest(sequences),
        "top_k": top_k,
        "temperature": temperature,
        "alignment": ALIGNMENT,
        "dtype": dtype,
        "precision": precision,
    }


class TopKTeacher:
    """The cached teacher of a run: a batch's trained positions as rows of top-k log-probabilities."""

    def __init__(self, cache: CachedOutputs, offsets: torch.Tensor, device: torch.device) -> None:
        cache = cache.to(device)
        self.ids, self.values, self.tail = (cache.arrays[name][:, 0] for name in ("indices", "values", "tail"))
        self.nbytes = cache.nbytes
        self.folder = cache.folder
        self.starts = offsets[:-1].to(device)
        self.counts = (offsets[1:] - offsets[:-1]).to(device)

    def rows(self, index: torch.Tensor, count: int) -> torch.Tensor:
        """The cache rows of sequences ``index`` (on the device), ``count`` of them in all (a host integer)."""
        counts = self.counts[index]
        starts = torch.repeat_interleave(self.starts[index], counts, output_size=count)
        begin = torch.repeat_interleave(counts.cumsum(0) - counts, counts, output_size=count)
        return starts + torch.arange(count, device=counts.device) - begin

    def __call__(self, batch: Batch) -> ModelOutput:
        """``ModelOutput`` with ``logits`` = top-k log-probabilities ``[R, k]`` (float32) of the batch's ``R`` trained
        positions in row-major order, and ``structure`` = ``topk_ids`` ``[R, k]`` (int64), ``tail`` ``[R]``."""
        rows = self.rows(batch.index, int(batch.extras.targets))
        return ModelOutput(logits=self.values[rows].float(),
                           structure={"topk_ids": self.ids[rows].long(), "tail": self.tail[rows]})  # fmt: skip


def teacher_log_probs(
    teacher: Teacher,
    loader: LMLoader,
    temperature: float,
    autocast: contextlib.AbstractContextManager[Any] | None = None,
) -> Iterator[tuple[Batch, torch.Tensor]]:
    """The teacher's full-vocabulary next-token ``log_softmax(z / τ)`` (float32 ``[N, V]``) at the trained positions
    of each of ``loader``'s batches, in order (what a cache build stores; under FSDP every process runs these
    passes, see :func:`kdlab.cache.build.shared_build`)."""
    with torch.no_grad(), autocast or contextlib.nullcontext():
        for batch in loader.epoch(0):
            _, mask = next_token_targets(batch.y)
            logits = prediction_logits(teacher(batch.x).logits)[mask].float()
            yield batch, F.log_softmax(logits / temperature, dim=-1)


def find_or_build(
    teacher: Teacher,
    loader: LMLoader,
    tokens: LMTokens,
    folder: Path,
    key: dict[str, Any],
    *,
    autocast: contextlib.AbstractContextManager[Any] | None = None,
    log: Log = lambda message: None,
) -> tuple[CachedOutputs, bool]:
    """The valid cache in ``folder``, built first when missing, stale or damaged; returns it and whether it was built
    now. ``loader`` visits every training sequence in index order (no shuffling)."""
    found = valid_cache(folder, key, log)
    if found is not None:
        return found, False
    offsets = target_offsets(tokens)
    began = time.perf_counter()
    writer = CacheWriter(folder, key, int(offsets[-1]), 1, key["top_k"], value_dtype=key["dtype"])
    try:
        for batch, log_probs in teacher_log_probs(teacher, loader, key["temperature"], autocast):
            first = int(offsets[int(batch.index[0])])
            writer.write(torch.arange(first, first + len(log_probs)), 0, ModelOutput(logits=log_probs))
        writer.commit()
    except BaseException:
        writer.abandon()
        raise
    cache = open_cache(folder, key)
    log(f"Teacher top-{key['top_k']} cache built in {time.perf_counter() - began:.1f} s: {int(offsets[-1]):,} "
        f"tokens, {cache.nbytes / 2**20:.1f} MiB ({cache.nbytes / max(int(offsets[-1]), 1):.0f} bytes a token) in "
        f"{folder}")  # fmt: skip
    return cache, True
