"""Sampling completions from a causal language model, for sequence-level and on-policy distillation.

:func:`sample_completions` continues each prompt of a batch by ``max_new_tokens`` tokens drawn one at a time with the
model's key–value cache. Prompts of different lengths are left-padded (with explicit position ids), so that every
row's next token is at the same column and the loop needs no host synchronisation: it always draws
``max_new_tokens`` tokens and only afterwards keeps, per row, the tokens up to and including the first end-of-sequence
id (all of them when a row has none, or when no end-of-sequence ids are given). Draws come from a
``torch.Generator``, so a run that is resumed draws the same completions.

The result is a batch in the same form as the data's: ``input_ids``, ``attention_mask``, ``position_ids``
``[B, P + N]`` and ``labels`` ``[B, P + N]`` with ``IGNORE_INDEX`` at the prompt, the padding and the tokens after
the first end-of-sequence — so the distillation losses read it like any other batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from kdlab.losses.tokens import IGNORE_INDEX


@dataclass
class Completions:
    """Prompts with their sampled continuations: ``inputs`` (``input_ids``, ``attention_mask``, ``position_ids``,
    each ``[B, P + N]``), ``labels`` ``[B, P + N]`` (the kept sampled tokens; ``IGNORE_INDEX`` elsewhere) and
    ``kept`` ``[B]``, the number of sampled tokens kept per row."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    kept: torch.Tensor


def left_padded(
    input_ids: torch.Tensor, prompt_lengths: torch.Tensor, width: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-aligned prompts: row i's first ``prompt_lengths[i]`` ids of ``input_ids`` ``[B, T]`` end at column
    ``width − 1`` of the result ``[B, width]`` (``pad_id`` before them), and the attention mask ``[B, width]``."""
    columns = torch.arange(width, device=input_ids.device)[None, :] - (width - prompt_lengths)[:, None]
    valid = columns >= 0
    ids = torch.where(valid, input_ids.gather(1, columns.clamp(0, input_ids.shape[1] - 1)), pad_id)
    return ids, valid.long()


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only attended tokens (0 for the left padding)."""
    return (attention_mask.cumsum(1) - 1).clamp(min=0)


def pick(logits: torch.Tensor, temperature: float, generator: torch.Generator | None, top_k: int = 0) -> torch.Tensor:
    """One token per row of ``logits`` ``[B, V]``: the argmax at ``temperature`` 0, else a draw from
    ``softmax(logits / temperature)`` restricted to the ``top_k`` most likely tokens when ``top_k`` > 0."""
    if temperature == 0:
        return logits.argmax(-1)
    scaled = logits.float() / temperature
    if top_k > 0:
        kth = scaled.topk(min(top_k, scaled.shape[-1]), dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    return torch.multinomial(scaled.softmax(-1), 1, generator=generator).squeeze(1)


def until_first_eos(tokens: torch.Tensor, eos_ids: Sequence[int]) -> torch.Tensor:
    """``[B, N]`` bool: the tokens up to and including each row's first end-of-sequence id (every token of a row
    without one; every token when ``eos_ids`` is empty)."""
    if not eos_ids:
        return torch.ones_like(tokens, dtype=torch.bool)
    is_eos = torch.isin(tokens, torch.tensor(list(eos_ids), device=tokens.device))
    before = is_eos.long().cumsum(1) - is_eos.long()  # EOS tokens strictly before each position
    return before == 0


def _cache(out: object) -> object:
    """The key–value cache of a forward's output: ``cache`` (transformers ≥ 5.2x) or ``past_key_values``."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


@torch.no_grad()
def sample_completions(
    model: nn.Module,
    input_ids: torch.Tensor,
    prompt_lengths: torch.Tensor,
    prompt_width: int,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    eos_ids: Sequence[int] = (),
    pad_id: int = 0,
    generator: torch.Generator | None = None,
) -> Completions:
    """Continue each prompt by sampling from ``model`` (a Hugging Face causal LM taking ``past_key_values``).

    Args:
        model: the generating model; it runs in eval mode here (dropout off) and is put back in its mode after.
        input_ids: ``[B, T]`` right-padded sequences whose first ``prompt_lengths[i]`` ids are row i's prompt.
        prompt_lengths: ``[B]`` int64, each ≥ 1, on the device of ``input_ids``.
        prompt_width: the longest prompt (a host integer, so no device read is needed).
        max_new_tokens: ``N``, the tokens drawn per row.
        temperature: of the draws (0: greedy); separate from any loss temperature.
        top_k: draw among the ``top_k`` most likely tokens only (0: all).
        eos_ids: end-of-sequence ids; a row keeps its tokens up to and including the first of them.
        pad_id: the id written into the left padding (never read: it is masked).
        generator: the source of the draws.
    """
    was_training = model.training
    model.eval()
    try:
        takes = inspect.signature(model.forward).parameters
        cache_name = "cache" if "cache" in takes else "past_key_values"
        last_only = {"logits_to_keep": 1} if "logits_to_keep" in takes else {}  # the prompts' logits are not needed
        ids, mask = left_padded(input_ids, prompt_lengths, prompt_width, pad_id)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=True, **last_only)
        drawn = []
        next_position = prompt_lengths[:, None]
        for step in range(max_new_tokens):
            token = pick(out.logits[:, -1], temperature, generator, top_k)
            drawn.append(token)
            if step + 1 == max_new_tokens:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_position + step,
                        use_cache=True, **{cache_name: _cache(out)})  # fmt: skip
    finally:
        model.train(was_training)
    new = torch.stack(drawn, dim=1)
    keep = until_first_eos(new, eos_ids)
    full_mask = torch.cat([mask[:, :prompt_width], keep.long()], dim=1)
    labels = torch.cat([torch.full_like(ids, IGNORE_INDEX), torch.where(keep, new, IGNORE_INDEX)], dim=1)
    inputs = {"input_ids": torch.cat([ids, new], dim=1), "attention_mask": full_mask,
              "position_ids": positions(full_mask)}  # fmt: skip
    return Completions(inputs, labels, keep.sum(1))
