"""Batches of sequences: labels for next-token training, windows with their token count, micro-batches cut to their
own length, the same order after a resume, and prompt logits left out without moving the next-token alignment."""

import pytest
import torch

from kdlab.core.errors import ConfigError
from kdlab.data.lm import LMLoader, LMTokens
from kdlab.data.lm.loader import keep_logits
from kdlab.losses import IGNORE_INDEX, next_token_targets


def tokens(lengths, prompts) -> LMTokens:
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.arange(1, n + 1) + 100 * i
    return LMTokens(ids, torch.tensor(lengths), torch.tensor(prompts), width)


def test_labels_train_from_the_prompts_end_to_the_sequences_end():
    (batch,) = [*LMLoader(tokens([5, 3], [2, 0]), 2).epoch(0)]
    assert batch.y.tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 3, 4, 5], [101, 102, 103, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch.x["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    _, mask = next_token_targets(batch.y)
    assert batch.extras.num_tokens == int(mask.sum()) == 3 + 2


def test_a_window_of_micro_batches_carries_the_windows_count_and_each_is_cut_to_its_longest():
    loader = LMLoader(tokens([9, 2, 4, 7, 3], [1, 0, 2, 0, 1]), 5, micro_batch_size=2)
    (window,) = [*loader.epoch(0)]
    assert [len(b) for b in window] == [2, 2, 1]
    assert [b.x["input_ids"].shape[1] for b in window] == [9, 7, 3]
    total = sum(int(next_token_targets(b.y)[1].sum()) for b in window)
    assert all(b.extras.num_tokens == total == 8 + 1 + 2 + 6 + 2 for b in window)


def test_epochs_differ_and_a_resumed_epoch_replays_the_same_windows():
    loader = LMLoader(tokens([4] * 10, [0] * 10), 3, shuffle=True, seed=7)
    whole = [b.index.tolist() for b in loader.epoch(2)]
    assert [b.index.tolist() for b in loader.epoch(2, start=2)] == whole[2:]
    assert [b.index.tolist() for b in loader.epoch(3)] != whole
    assert sorted(i for w in whole for i in w) == list(range(10))


def test_kept_logits_start_where_the_first_trained_token_is_predicted():
    loader = LMLoader(tokens([6, 5], [3, 4]), 2, trim_logits=True)
    (batch,) = [*loader.epoch(0)]
    assert batch.x["logits_to_keep"] == 6 - 2  # positions 2..5; position 2 predicts token 3, the first trained
    full = next(iter(LMLoader(tokens([6, 5], [3, 4]), 2).epoch(0)))
    assert torch.equal(batch.y, full.y[:, 2:])
    assert torch.equal(next_token_targets(batch.y)[0][next_token_targets(batch.y)[1]],
                       next_token_targets(full.y)[0][next_token_targets(full.y)[1]])  # fmt: skip
    x, y = keep_logits({"input_ids": full.x["input_ids"]}, full.y, 0)
    assert "logits_to_keep" not in x and y is full.y


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_batch_sizes_are_refused(bad):
    with pytest.raises(ConfigError, match="positive integer"):
        LMLoader(tokens([3], [0]), bad)
