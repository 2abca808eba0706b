import pytest
import torch

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.data.text.loader import TextExtras, TextLoader
from kdlab.data.text.tokens import Tokens, tokenize


@pytest.fixture(scope="module")
def student(wordpiece, texts):
    return tokenize(texts, wordpiece, cache=False)


@pytest.fixture(scope="module")
def labels(texts):
    return torch.arange(len(texts)) % 3


def flat(batches: list[Batch]) -> list[tuple]:
    return [(tuple(b.index.tolist()), b.x["input_ids"].tolist(), b.y.tolist()) for b in batches]


def test_each_batch_is_cut_to_its_longest_text(student, labels):
    loader = TextLoader(student, labels, 7, shuffle=True, seed=3)
    batches = list(loader.epoch(0))
    assert len(batches) == len(loader) == 6 and [len(b) for b in batches] == [7] * 5 + [5]
    widths = set()
    for batch in batches:
        lengths = student.lengths[batch.index]
        ids, mask = batch.x["input_ids"], batch.x["attention_mask"]
        assert set(batch.x) == {"input_ids", "attention_mask"} and ids.dtype == mask.dtype == torch.long
        assert ids.shape == mask.shape == (len(batch), int(lengths.max()))
        assert mask.sum(1).tolist() == lengths.tolist() and (mask[:, 0] == 1).all()
        assert torch.equal(ids, student.input_ids[batch.index, : ids.shape[1]])
        assert torch.equal(batch.y, labels[batch.index])
        assert isinstance(batch.extras, TextExtras) and batch.extras.teacher_x is None
        widths.add(ids.shape[1])
    assert len(widths) > 1 and max(widths) <= student.input_ids.shape[1]
    assert sorted(i for b in batches for i in b.index.tolist()) == list(range(len(labels)))


def test_a_resumed_epoch_gives_the_same_batches_and_epochs_differ(student, labels):
    loader = TextLoader(student, labels, 6, shuffle=True, seed=1)
    full = flat(list(loader.epoch(2)))
    assert flat(list(loader.epoch(2, start=3))) == full[3:]
    assert flat(list(TextLoader(student, labels, 6, shuffle=True, seed=1).epoch(2))) == full  # a fresh loader
    assert [i for b in loader.epoch(3) for i in b.index.tolist()] != [i for b in loader.epoch(2) for i in
                                                                        b.index.tolist()]  # fmt: skip
    plain = TextLoader(student, labels, 6)
    assert [i for b in plain.epoch(0) for i in b.index.tolist()] == list(range(len(labels)))


def test_a_teacher_with_its_own_tokenizer_gets_its_own_ids(student, labels, byte_bpe, texts):
    teacher = tokenize(texts, byte_bpe, cache=False)
    assert not torch.equal(teacher.lengths, student.lengths)
    for batch in TextLoader(student, labels, 8, shuffle=True, teacher_tokens=teacher).epoch(0):
        theirs = batch.extras.teacher_x
        lengths = teacher.lengths[batch.index]
        assert theirs["input_ids"].shape == (len(batch), int(lengths.max()))
        assert torch.equal(theirs["input_ids"], teacher.input_ids[batch.index, : int(lengths.max())])
        assert theirs["attention_mask"].sum(1).tolist() == lengths.tolist()


def test_token_type_ids_travel_with_the_batch():
    ids = torch.tensor([[5, 6, 7], [5, 6, 0]])
    types = torch.tensor([[0, 1, 1], [0, 1, 0]])
    tokens = Tokens(ids, torch.tensor([3, 2]), 0, 0, 3, types)
    (batch,) = TextLoader(tokens, torch.tensor([0, 1]), 4).epoch(0)
    assert torch.equal(batch.x["token_type_ids"], types)


def test_bad_loader_arguments_are_clear_errors(student, labels):
    with pytest.raises(ConfigError, match="batch size must be a positive integer, not 0"):
        TextLoader(student, labels, 0)
    with pytest.raises(ConfigError, match=r"40 tokenised texts but 39 labels"):
        TextLoader(student, labels[:-1], 4)
