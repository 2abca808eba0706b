"""``lm_kd``'s loss on the rows of a batch: one row per trained next-token position, in row-major order.

Both models come in one of their forms — the student as full logits ``[B, T, V]`` or as its final hidden states and
output head (``chunk_size``: the logits are made chunk by chunk and never all at once); the teacher as full logits,
as hidden states and head, or as a top-k cache (``[R, k]`` log-probabilities, ids and the tail) — and every
combination reduces to the same per-chunk computation: the rows' logits, one divergence per row, summed; the
next-token cross-entropy likewise. :func:`kdlab.losses.chunked.chunked_sums` runs it chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from kdlab.core.outputs import ModelOutput
from kdlab.losses.chunked import chunked_sums
from kdlab.losses.tokens import next_token_cross_entropy, prediction_logits
from kdlab.losses.top_k import raw_top_k_kl, top_k_bins

Rows = Callable[[int, int], torch.Tensor]


def _rows(output: ModelOutput, mask: torch.Tensor, head: nn.Module | None, vocab: int | None) -> tuple[Rows, int]:
    """Logits of rows ``[start, end)`` of a model's output at the ``mask`` positions, and how many rows there are:
    from its hidden states through ``head`` when it gave them (the chunked form), else from its logits. A vocabulary
    padded beyond the tokenizer's ``vocab`` tokens (e.g. 152,064 logits for 151,936 tokens, for speed) has its extra
    logits cut — ids no text holds — never zero-padded on the other model's side."""
    cut = slice(None, vocab)
    if output.hidden is not None and head is not None:
        hidden = prediction_logits(output.hidden)[mask]  # [R, d]: the states that predict a trained token
        return (lambda start, end: head(hidden[start:end])[..., cut]), len(hidden)
    logits = prediction_logits(output.logits)[mask][..., cut]
    return (lambda start, end: logits[start:end]), len(logits)


def head_of(model: Any) -> nn.Module | None:
    """A causal LM's output head (``get_output_embeddings``); None for a model without one."""
    getter = getattr(model, "get_output_embeddings", None)
    return getter() if getter is not None else None


def lm_kd_sums(
    student: ModelOutput,
    teacher: ModelOutput,
    targets: torch.Tensor,
    mask: torch.Tensor,
    *,
    divergence: Callable[..., torch.Tensor],
    options: dict[str, Any],
    temperature: float,
    tau_squared: bool,
    tail: str,
    chunk_size: int | None,
    heads: tuple[nn.Module | None, nn.Module | None],
    with_ce: bool,
    vocab: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ divergence, Σ next-token cross-entropy) over the batch's trained positions (the CE sum is 0 unless
    ``with_ce``). ``targets``/``mask``: :func:`kdlab.losses.tokens.next_token_targets` of the batch's labels."""
    student_rows, count = _rows(student, mask, heads[0], vocab)
    labels = targets[mask]
    sparse = "topk_ids" in teacher.structure
    if sparse:
        ids, tail_log_prob = teacher.structure["topk_ids"], teacher.structure["tail"]
        teacher_log_probs = teacher.logits
    else:
        teacher_rows, _ = _rows(teacher, mask, heads[1], vocab)

    def sums(start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = student_rows(start, end)
        ones = torch.ones(1, end - start, dtype=torch.bool, device=z.device)
        if not sparse:
            with torch.no_grad():
                t = teacher_rows(start, end)
            value = divergence(z[None], t[None], ones, temperature=temperature, tau_squared=tau_squared, **options)
        elif tail == "raw":
            value = raw_top_k_kl(z, ids[start:end], teacher_log_probs[start:end], temperature=temperature)
            value = value * temperature**2 if tau_squared else value
        else:
            s_bins, t_bins = top_k_bins(z, ids[start:end], teacher_log_probs[start:end], tail_log_prob[start:end],
                                        temperature=temperature, tail=tail)  # fmt: skip
            value = divergence(s_bins[None], t_bins[None], ones, temperature=1.0, tau_squared=False, **options)
            value = value * temperature**2 if tau_squared else value
        ce = next_token_cross_entropy(z[None], labels[None, start:end], ones).sum() if with_ce else z.new_zeros(())
        return value.sum(), ce

    kd, ce = chunked_sums(count, chunk_size, sums)
    return kd, ce
