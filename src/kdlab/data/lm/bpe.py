"""A byte-level BPE tokenizer trained on a corpus with the ``tokenizers`` library (about a second for a few MB),
cached on disk by a SHA-256 of everything it depends on, so every run on the same corpus reads with the same one.

Byte-level: every byte is in the base alphabet, so no text is ever out of vocabulary. Its one special token,
``<|endoftext|>`` (id 0), ends each document and is also the padding token — deliberately, as in GPT-2: kdlab finds
padding from attention masks and lengths, never by token id.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdlab.core.errors import ConfigError
from kdlab.core.files import write_atomic
from kdlab.data.text.tokens import optional

END = "<|endoftext|>"
MAGIC = b"kdlab-bpe-1\n"
MIN_VOCAB = 257  # the 256 bytes and the end-of-text token


def tokenizer_cache_dir() -> Path:
    """``$KDLAB_CACHE/tokenizers``, else ``~/.cache/kdlab/tokenizers``."""
    root = os.environ.get("KDLAB_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "kdlab") / "tokenizers"


def bpe_key(texts: Sequence[str], vocab_size: int) -> str:
    """SHA-256 of the layout, the vocabulary size, the ``tokenizers`` version (its trainer may change) and the
    texts (each prefixed with its length)."""
    tokenizers = optional("tokenizers")
    digest = hashlib.sha256(MAGIC + f"{vocab_size}\0{tokenizers.__version__}\0".encode())
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def train_bpe(texts: Sequence[str], vocab_size: int) -> Any:
    """A ``tokenizers.Tokenizer``: byte-level BPE with ``vocab_size`` entries learnt from ``texts``."""
    tokenizers = optional("tokenizers")
    byte_level = tokenizers.pre_tokenizers.ByteLevel
    model = tokenizers.Tokenizer(tokenizers.models.BPE())
    model.pre_tokenizer = byte_level(add_prefix_space=False)
    model.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[END], initial_alphabet=byte_level.alphabet(), show_progress=False
    )
    model.train_from_iterator(texts, trainer, length=len(texts))
    return model


def byte_level_bpe(texts: Sequence[str], vocab_size: int = 1024, name: str = "corpus") -> Any:
    """A ``transformers`` fast tokenizer (``<|endoftext|>`` as EOS, BOS and padding) for ``texts``: read from the
    cache, or trained and cached (a damaged file is trained again)."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB:
        raise ConfigError(
            f"vocab_size must be an integer ≥ {MIN_VOCAB} (the 256 bytes and the end-of-text token); got "
            f"{vocab_size!r}."
        )
    tokenizers = optional("tokenizers")
    transformers = optional("transformers")
    key = bpe_key(texts, vocab_size)
    path = tokenizer_cache_dir() / f"{name}-{vocab_size}-{key[:16]}.json"
    model = None
    if path.is_file():
        try:
            model = tokenizers.Tokenizer.from_file(str(path))
        except Exception:  # a damaged file: train again
            model = None
    if model is None:
        model = train_bpe(texts, vocab_size)
        write_atomic(path, model.to_str().encode())
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=model, eos_token=END, bos_token=END, pad_token=END, unk_token=None
    )
