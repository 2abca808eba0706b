"""Language-model data sets: the Python standard library's own source (shipped with every Python, so it is there
offline) and the user's files.

Each is a plain function of keyword options returning :class:`LMSplits`, ready for the data-set registry.
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdlab.core.errors import ConfigError
from kdlab.data.base import DATASETS
from kdlab.data.lm.bpe import byte_level_bpe
from kdlab.data.lm.readers import Columns, LMData, read_lm

LM = ("causal_lm",)


@dataclass
class LMSplits:
    """The splits of a language-model data set (``val``/``test`` may be empty) and, when the data set brings one,
    the tokenizer it is read with (a model's own tokenizer comes first; see :mod:`kdlab.tasks.lm`)."""

    train: LMData
    val: LMData
    test: LMData
    name: str
    tokenizer: Any = None


def stdlib_files(folder: str | Path | None = None) -> list[Path]:
    """The top-level ``*.py`` modules of the standard library (``sysconfig``'s ``stdlib`` path), sorted by name."""
    root = Path(folder or sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.glob("*.py") if p.is_file())


def split_of(name: str) -> str:
    """A file's split from a SHA-256 of its name — 10 % test, 10 % val, the rest train — the same on every machine
    (the files themselves differ between Python versions)."""
    bucket = hashlib.sha256(f"kdlab-stdlib:{name}".encode()).digest()[0] % 10
    return "test" if bucket == 9 else "val" if bucket == 8 else "train"


@DATASETS.register("stdlib", tasks=LM)
def stdlib(vocab_size: int = 1024, folder: str | None = None) -> LMSplits:
    """The Python standard library's top-level modules (about 4.7 MB of real code; the exact files depend on the
    Python version), one document a file, split by file name (80 / 10 / 10 %), with a byte-level BPE of
    ``vocab_size`` tokens trained on the training files (cached). ``folder`` reads another folder of ``*.py``
    files the same way."""
    files = stdlib_files(folder)
    if not files:
        where = folder or sysconfig.get_paths()["stdlib"]
        raise ConfigError(f"No *.py files in {where}; give data.folder=... a folder of Python files.")
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for path in files:
        parts[split_of(path.name)].append(path.read_text(encoding="utf-8", errors="replace"))
    data = {k: LMData("text", f"stdlib {k}", documents=v) for k, v in parts.items()}
    tokenizer = byte_level_bpe(parts["train"], vocab_size, name="stdlib")
    return LMSplits(data["train"], data["val"], data["test"], "stdlib", tokenizer)


@DATASETS.register("lm_files", tasks=LM)
def lm_files(
    train: str,
    val: str | None = None,
    test: str | None = None,
    text: str = "text",
    prompt: str = "prompt",
    completion: str = "completion",
    messages: str = "messages",
    encoding: str = "utf-8",
) -> LMSplits:
    """Your language-model data (``data.train``, optional ``data.val``, ``data.test``): a folder of text files (one
    document a file), a text file, or a JSONL file of ``text``, ``prompt``/``completion`` or chat ``messages``
    records (the column names are options). Read with the model's tokenizer."""
    columns = Columns(text, prompt, completion, messages)
    first = read_lm(train, columns, encoding)
    rest = [read_lm(path, columns, encoding) if path else LMData.empty(first.kind) for path in (val, test)]
    for name, part in zip(("val", "test"), rest, strict=True):
        if len(part) and part.kind != first.kind:
            raise ConfigError(
                f"data.{name} holds {part.kind} examples but data.train holds {first.kind} examples; give every split "
                "in the same form."
            )
    return LMSplits(first, rest[0], rest[1], "lm_files")
