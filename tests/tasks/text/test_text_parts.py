"""The text task's parts: stratified subsets, pooling, CKA pairs, the padded teacher pass of the cache."""

import pytest
import torch

from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.data.text import TextData
from kdlab.tasks.text import teacher_source
from kdlab.tasks.text.evaluate import parse_pair, pooled
from kdlab.tasks.text.splits import stratified


def test_stratified_subset_keeps_each_class_share_and_is_seeded():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    data = TextData([f"t{i}" for i in range(100)], labels, ["a", "b", "c"])
    part = stratified(data, 20, torch.Generator().manual_seed(0), "train_size")
    assert part.labels.bincount().tolist() == [12, 6, 2]
    again = stratified(data, 20, torch.Generator().manual_seed(0), "train_size")
    other = stratified(data, 20, torch.Generator().manual_seed(1), "train_size")
    assert part.texts == again.texts and part.texts != other.texts
    assert all(data.labels[int(t[1:])] == y for t, y in zip(part.texts, part.labels.tolist(), strict=True))
    with pytest.raises(ConfigError, match=r"data\.train_size=101 but the split has 100 examples"):
        stratified(data, 101, torch.Generator(), "train_size")


def test_mean_pooling_ignores_padding_and_cls_takes_the_first_position():
    hidden = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    mean = pooled(hidden, mask, "mean")
    assert torch.allclose(mean[0], hidden[0, :3].mean(0)) and torch.allclose(mean[1], hidden[1].mean(0))
    assert torch.equal(pooled(hidden, mask, "cls"), hidden[:, 0])


def test_cka_pairs_parse_and_bad_ones_name_the_form():
    assert parse_pair("2:6") == (2, 6, "cls") and parse_pair("0:3:mean") == (0, 3, "mean")
    for bad in ("2", "a:b", "2:6:max"):
        with pytest.raises(ConfigError, match="STUDENT:TEACHER"):
            parse_pair(bad)


def test_the_cache_pass_pads_features_to_the_longest_text():
    class Fake:
        def __call__(self, inputs):
            ids = inputs["input_ids"]
            return ModelOutput(logits=torch.zeros(len(ids), 3), features={"h": torch.ones(len(ids), ids.shape[1], 4)})

    padded = teacher_source._Padded(Fake(), 9)({"input_ids": torch.zeros(2, 5, dtype=torch.long)})
    assert padded.features["h"].shape == (2, 9, 4)
    assert padded.features["h"][:, :5].eq(1).all() and padded.features["h"][:, 5:].eq(0).all()
