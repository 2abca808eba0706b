"""Texts as token ids, cached on disk.

:func:`tokenize` encodes texts with a Hugging Face fast tokenizer (``transformers`` ``PreTrainedTokenizerFast``
or a bare ``tokenizers.Tokenizer``) in one batch call, truncates them to a maximum length and pads them into one
tensor. The result is cached in a file named by a SHA-256 of everything it depends on: the tokenizer's
serialised JSON (vocabulary, normaliser, special tokens), the maximum length, the padding id and the texts. The
file ends with a SHA-256 of its own content, so a file cut short or damaged is noticed and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from kdlab.core.errors import ConfigError
from kdlab.core.files import read_checked, write_checked

DEFAULT_LENGTH = 512  # when a tokenizer declares no real limit (transformers then says 1e30)
ABSURD_LENGTH = 1_000_000
MAGIC = b"kdlab-tokens-1\n"  # the layout of a cache file; a new layout changes it, and so every key
PAD_TOKENS = ("[PAD]", "<pad>", "<|pad|>", "<PAD>")


@dataclass
class Tokens:
    """Token ids of ``N`` texts: ``input_ids`` int64 ``[N, T]`` (``T`` the longest text, at most ``max_length``)
    padded with ``pad_id``, ``lengths`` int64 ``[N]``, and ``token_type_ids`` ``[N, T]`` when the tokenizer gives
    any that are not 0 (never for single sentences). ``truncated`` texts were longer than ``max_length``."""

    input_ids: torch.Tensor
    lengths: torch.Tensor
    pad_id: int
    truncated: int
    max_length: int
    token_type_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.lengths)


def optional(module: str) -> ModuleType:
    """Import one module of the ``kdlab[text]`` extra, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"Text and language-model data need the optional extra: pip install 'kdlab[text]' "
                          f"({module} is not installed).") from None  # fmt: skip


def token_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` if given, else ``$KDLAB_CACHE/tokens``, else ``~/.cache/kdlab/tokens``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    root = os.environ.get("KDLAB_CACHE")
    return Path(root).expanduser() / "tokens" if root else Path.home() / ".cache" / "kdlab" / "tokens"


def tokenize(
    texts: Sequence[str],
    tokenizer: Any,
    max_length: int | None = None,
    cache_dir: str | Path | None = None,
    *,
    cache: bool = True,
) -> Tokens:
    """Token ids of ``texts`` (with the tokenizer's special tokens, such as ``[CLS]`` and ``[SEP]``), truncated to
    ``max_length`` (default: the tokenizer's ``model_max_length``, or 512 when it declares none), read from the
    cache under ``cache_dir`` (see :func:`token_cache_dir`) when the same texts were tokenised the same way before.
    ``cache=False`` neither reads nor writes the cache."""
    texts = list(texts)
    wrong = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if wrong:
        raise ConfigError(f"tokenize needs strings, but text {wrong[0]} is a {type(texts[wrong[0]]).__name__}.")
    backend, pad_id, limit = _prepare(tokenizer, max_length)
    if not cache:
        return _encode(backend, texts, limit, pad_id)
    key = cache_key(backend, texts, limit, pad_id)  # before _encode, which switches truncation on
    path = token_cache_dir(cache_dir) / f"{key}.pt"
    found = _read(path, key, len(texts))
    if found is not None:
        return found
    tokens = _encode(backend, texts, limit, pad_id)
    with contextlib.suppress(OSError):  # a read-only or full cache folder costs the next run a re-tokenisation,
        _write(path, key, tokens)  # not this run its data
    return tokens


def same_tokenizer(first: Any, second: Any) -> bool:
    """Whether two tokenizers turn every text into the same ids: the same serialised tokenizer (truncation and
    padding settings aside), padding id and default maximum length. None is the same as no tokenizer."""
    if first is None or second is None:
        return False
    if first is second:
        return True
    (one, pad_one, limit_one), (two, pad_two, limit_two) = _prepare(first, None), _prepare(second, None)
    return (pad_one, limit_one) == (pad_two, limit_two) and one.to_str() == two.to_str()


def backend(tokenizer: Any) -> Any:
    """A private copy of a fast tokenizer's ``tokenizers.Tokenizer`` without truncation or padding (the user's
    object is left as it was)."""
    return _prepare(tokenizer, None)[0]


def _prepare(tokenizer: Any, max_length: int | None) -> tuple[Any, int, int]:
    """A private copy of the tokenizer's ``tokenizers.Tokenizer`` without truncation or padding (so the user's
    object is left as it was, and its settings do not change the key), its padding id and the length limit."""
    tokenizers = optional("tokenizers")
    if isinstance(tokenizer, tokenizers.Tokenizer):
        backend, declared = tokenizer, (tokenizer.truncation or {}).get("max_length")
        pad_id = (tokenizer.padding or {}).get("pad_id")
    else:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if not isinstance(backend, tokenizers.Tokenizer):
            raise ConfigError(
                f"Cannot tokenise with a {type(tokenizer).__name__}: give a fast Hugging Face tokenizer "
                "(AutoTokenizer.from_pretrained(..., use_fast=True), a PreTrainedTokenizerFast) or a "
                "tokenizers.Tokenizer."
            )
        declared, pad_id = getattr(tokenizer, "model_max_length", None), getattr(tokenizer, "pad_token_id", None)
    copy = tokenizers.Tokenizer.from_str(backend.to_str())
    copy.no_truncation()
    copy.no_padding()
    if pad_id is None:
        pad_id = next((copy.token_to_id(t) for t in PAD_TOKENS if copy.token_to_id(t) is not None), 0)
    special = copy.num_special_tokens_to_add(False)
    if max_length is None:
        limit = int(declared) if declared and declared < ABSURD_LENGTH else DEFAULT_LENGTH
    elif isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= special:
        raise ConfigError(
            f"max_length must be an integer above {special} (the special tokens this tokenizer adds to every "
            f"text), not {max_length!r}."
        )
    else:
        limit = max_length
    return copy, int(pad_id), max(limit, special + 1)


def cache_key(backend: Any, texts: Sequence[str], max_length: int, pad_id: int) -> str:
    """The SHA-256 (hex) of the cache layout, the tokenizer's JSON, ``max_length``, ``pad_id`` and the texts (each
    prefixed with its length, so that no two lists of texts run together the same way)."""
    digest = hashlib.sha256(MAGIC + f"{max_length}\0{pad_id}\0".encode())
    digest.update(backend.to_str().encode())
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _encode(backend: Any, texts: list[str], max_length: int, pad_id: int) -> Tokens:
    backend.enable_truncation(max_length)
    try:
        encodings = backend.encode_batch(texts)
    except Exception as error:  # the Rust side reports its own exceptions, of no one Python type
        raise ConfigError(f"The tokenizer failed on these texts: {str(error)[:200]}") from None
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    width = int(lengths.max()) if len(texts) else 0
    filled = np.arange(width)[None, :] < lengths[:, None]  # row-major: the positions of each text's ids in turn

    def padded(rows: Any, fill: int) -> torch.Tensor:
        grid = np.full((len(texts), width), fill, dtype=np.int64)
        grid[filled] = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        return torch.from_numpy(grid)

    types = padded((e.type_ids for e in encodings), 0)
    return Tokens(
        input_ids=padded((e.ids for e in encodings), pad_id),
        lengths=torch.from_numpy(lengths),
        pad_id=pad_id,
        truncated=sum(1 for e in encodings if e.overflowing),
        max_length=max_length,
        token_type_ids=types if bool(types.any()) else None,
    )


def _write(path: Path, key: str, tokens: Tokens) -> None:
    """The cache file (:func:`kdlab.core.files.write_checked`). The ids are kept without their padding and as
    int32, a tenth of the padded int64 tensor for tweets (one long text widens every row)."""
    filled = _filled(tokens.lengths, tokens.input_ids.shape[1])
    types = tokens.token_type_ids
    state = {"key": key, "lengths": tokens.lengths, "pad_id": tokens.pad_id, "truncated": tokens.truncated,
             "max_length": tokens.max_length, "width": tokens.input_ids.shape[1],
             "input_ids": tokens.input_ids[filled].to(torch.int32),
             "token_type_ids": None if types is None else types[filled].to(torch.int32)}  # fmt: skip
    write_checked(path, MAGIC, state)


def _filled(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """``[N, width]`` True at the positions that hold a token (row-major order: each text's ids in turn)."""
    return torch.arange(width)[None, :] < lengths[:, None]


def _read(path: Path, key: str, count: int) -> Tokens | None:
    """The cached tokens of ``key``, or None when there is no file or it is damaged (then it is rebuilt)."""
    state = read_checked(path, MAGIC)
    if state is None:
        return None
    try:
        lengths, pad_id, flat_types = state["lengths"].long(), int(state["pad_id"]), state["token_type_ids"]
        filled = _filled(lengths, int(state["width"]))
        input_ids = torch.full(filled.shape, pad_id, dtype=torch.long).masked_scatter_(
            filled, state["input_ids"].long()
        )
        types = None if flat_types is None else torch.zeros_like(input_ids).masked_scatter_(filled, flat_types.long())
        tokens = Tokens(input_ids, lengths, pad_id, int(state["truncated"]), int(state["max_length"]), types)
    except Exception:  # a state of another layout
        return None
    if state["key"] != key or len(tokens) != count or tokens.input_ids.shape[0] != count:
        return None
    return tokens
