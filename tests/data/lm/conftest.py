"""Language-model data on real text: the standard library's own source and a byte-level BPE trained on it."""

import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from kdlab.data.lm import byte_level_bpe, stdlib


@pytest.fixture(scope="session")
def corpus():
    """The shipped corpus (512-token BPE)."""
    return stdlib(vocab_size=512)


@pytest.fixture(scope="session")
def bpe(corpus):
    return corpus.tokenizer


@pytest.fixture(scope="session")
def small_bpe():
    """A 300-token BPE learnt from a few sentences (for hand-checked encodings)."""
    texts = ["def add(a, b):\n    return a + b\n", "class Point:\n    x: int = 0\n"] * 20
    return byte_level_bpe(texts, 300, name="tiny")
