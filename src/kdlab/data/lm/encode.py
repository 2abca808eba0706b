"""Language-model examples as token sequences, cached on disk.

- Documents (``text``): each document's ids and an end-of-text id, cut into sequences of ``max_length`` tokens;
  with ``packing`` all documents are first joined into one stream (short documents then fill whole sequences).
  ``prompt_length`` P makes the first P tokens of every sequence its prompt (sequences of at most P tokens are
  dropped): what sequence-level and on-policy distillation continue.
- Prompt/completion pairs: the prompt's ids, then the completion's and an end-of-text id; a pair longer than
  ``max_length`` loses the end of its completion (counted as truncated), one whose prompt fills ``max_length`` has
  nothing to train and is dropped (counted).
- Chat conversations: rendered by the tokenizer's chat template — the prompt is every message but the last with the
  generation prompt, the completion the rest of the rendered conversation — then as prompt/completion pairs (the
  template writes its own end-of-turn tokens).

Prompts and completions are tokenised separately (without special tokens) and joined, so the boundary is exact. The
sequences are stored right-padded, but padding is known from ``lengths`` alone — never from a token id (the
padding id is often the end-of-text id). The cache file is named by a SHA-256 of the tokenizer's JSON, the
options and the texts, and checks itself (:func:`kdlab.core.files.read_checked`): a damaged file is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import torch

from kdlab.core.errors import ConfigError
from kdlab.core.files import read_checked, write_checked
from kdlab.data.lm.readers import LMData
from kdlab.data.text.tokens import backend, token_cache_dir

MAGIC = b"kdlab-lm-tokens-1\n"


@dataclass
class LMTokens:
    """``N`` sequences: ``input_ids`` int64 ``[N, W]`` (right-padded with 0, ``W`` the longest), ``lengths`` and
    ``prompt_lengths`` int64 ``[N]`` (tokens ``prompt_lengths[i] ≤ t < lengths[i]`` are trained), the
    ``max_length`` they were cut to, how many examples were ``truncated`` and how many ``dropped``."""

    input_ids: torch.Tensor
    lengths: torch.Tensor
    prompt_lengths: torch.Tensor
    max_length: int
    truncated: int = 0
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def targets(self) -> int:
        """The next-token targets the sequences train (a sequence of n tokens with prompt p trains n − max(p, 1))."""
        return int((self.lengths - self.prompt_lengths.clamp(min=1)).clamp(min=0).sum())


def eos_id(tokenizer: Any) -> int | None:
    """The tokenizer's end-of-text id (None when it has none)."""
    value = getattr(tokenizer, "eos_token_id", None)
    return int(value) if isinstance(value, int) else None


def render_chat(conversations: Sequence[list[dict[str, str]]], tokenizer: Any, where: str) -> tuple[list, list]:
    """(prompts, completions) of chat conversations through the tokenizer's chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"{where} holds chat conversations (messages), which are rendered with the tokenizer's chat template, but "
            f"the tokenizer ({type(tokenizer).__name__}) has none. Give a tokenizer with a chat_template (set "
            "tokenizer.chat_template), or give the data as prompt/completion pairs."
        )
    prompts, completions = [], []
    for row, messages in enumerate(conversations, start=1):
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        whole = tokenizer.apply_chat_template(messages, tokenize=False)
        if not whole.startswith(prompt):
            raise ConfigError(
                f"{where}, example {row}: the chat template renders the conversation without its last turn as a "
                "text that does not begin the whole conversation's, so the assistant's turn cannot be told apart."
            )
        prompts.append(prompt)
        completions.append(whole[len(prompt) :])
    return prompts, completions


def _ids(model: Any, texts: Sequence[str]) -> list[list[int]]:
    try:
        return [e.ids for e in model.encode_batch(list(texts), add_special_tokens=False)]
    except Exception as error:  # the Rust side raises its own exceptions
        raise ConfigError(f"The tokenizer failed on these texts: {str(error)[:200]}") from None


def _documents(ids: list[list[int]], eos: int | None, length: int, packing: bool, prompt: int) -> tuple[list, int]:
    tail = [] if eos is None else [eos]
    pieces = [list(chain.from_iterable(doc + tail for doc in ids))] if packing else [doc + tail for doc in ids]
    out, dropped = [], 0
    for piece in pieces:
        for start in range(0, len(piece), length):
            chunk = piece[start : start + length]
            if len(chunk) > max(prompt, 1):
                out.append((chunk, prompt))
            else:
                dropped += 1
    return out, dropped


def _pairs(prompts: list[list[int]], completions: list[list[int]], length: int) -> tuple[list, int, int]:
    out, truncated, dropped = [], 0, 0
    for prompt, completion in zip(prompts, completions, strict=True):
        if len(prompt) + len(completion) > length:
            truncated += 1
        if len(prompt) >= length or not completion:
            dropped += 1
            continue
        out.append(((prompt + completion)[:length], len(prompt)))
    return out, truncated, dropped


def encode_lm(
    data: LMData,
    tokenizer: Any,
    *,
    max_length: int,
    packing: bool = False,
    prompt_length: int | None = None,
    cache: bool = True,
) -> LMTokens:
    """The sequences of ``data`` in ``tokenizer``'s ids (see the module docstring), from the cache when the same
    texts were encoded the same way before."""
    model = backend(tokenizer)
    eos = eos_id(tokenizer)
    prompt = prompt_length or 0
    if data.kind == "chat":
        prompts, completions = render_chat(data.conversations, tokenizer, data.source)
        texts, tail = [*prompts, *completions], None
    elif data.kind == "prompt_completion":
        texts, tail = [*data.prompts, *data.completions], eos
    else:
        texts, tail = data.documents, eos
    options = f"{data.kind}\0{max_length}\0{packing}\0{prompt}\0{tail}\0"
    key = _key(model.to_str(), options, texts)
    path = token_cache_dir() / f"lm-{key}.pt"
    found = _read(path, key) if cache else None
    if found is not None:
        return found
    ids = _ids(model, texts)
    if data.kind == "text":
        rows, dropped = _documents(ids, eos, max_length, packing, prompt)
        truncated = 0
    else:
        half = len(ids) // 2
        extra = [] if tail is None else [tail]
        rows, truncated, dropped = _pairs(ids[:half], [c + extra for c in ids[half:]], max_length)
    tokens = _assemble(rows, max_length, truncated, dropped)
    if cache:
        with contextlib.suppress(OSError):  # an unwritable cache costs the next run an encoding, not this run its data
            _write(path, key, tokens)
    return tokens


def _key(tokenizer_json: str, options: str, texts: Sequence[str]) -> str:
    digest = hashlib.sha256(MAGIC + options.encode())
    digest.update(tokenizer_json.encode())
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _assemble(rows: list[tuple[list[int], int]], max_length: int, truncated: int, dropped: int) -> LMTokens:
    lengths = np.fromiter((len(ids) for ids, _ in rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max()) if len(rows) else 0
    grid = np.zeros((len(rows), width), dtype=np.int64)
    grid[np.arange(width)[None, :] < lengths[:, None]] = np.fromiter(
        (i for ids, _ in rows for i in ids), dtype=np.int64, count=int(lengths.sum())
    )
    prompts = torch.tensor([p for _, p in rows], dtype=torch.long)
    return LMTokens(torch.from_numpy(grid), torch.from_numpy(lengths), prompts, max_length, truncated, dropped)


def _write(path: Any, key: str, tokens: LMTokens) -> None:
    filled = torch.arange(tokens.input_ids.shape[1])[None, :] < tokens.lengths[:, None]
    write_checked(path, MAGIC, {
        "key": key, "ids": tokens.input_ids[filled].to(torch.int32), "lengths": tokens.lengths,
        "prompt_lengths": tokens.prompt_lengths, "max_length": tokens.max_length, "truncated": tokens.truncated,
        "dropped": tokens.dropped,
    })  # fmt: skip


def _read(path: Any, key: str) -> LMTokens | None:
    state = read_checked(path, MAGIC)
    if state is None or state.get("key") != key:
        return None
    try:
        lengths = state["lengths"].long()
        width = int(lengths.max()) if len(lengths) else 0
        filled = torch.arange(width)[None, :] < lengths[:, None]
        ids = torch.zeros(filled.shape, dtype=torch.long).masked_scatter_(filled, state["ids"].long())
        return LMTokens(ids, lengths, state["prompt_lengths"].long(), int(state["max_length"]),
                        int(state["truncated"]), int(state["dropped"]))  # fmt: skip
    except Exception:  # a state of another layout
        return None
