"""The sources of a job whose data the Python API was given as objects: ``(x, y)`` tensors, a map-style
``Dataset`` of ``(input, label)`` pairs or a ``DataLoader`` — images ``[N, C, H, W]`` or any other example shape
(feature vectors ``[N, d]``, ...)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from kdlab.core.errors import ConfigError
from kdlab.data.base import DataInfo
from kdlab.data.loader import TensorLoader
from kdlab.data.policies import Augment
from kdlab.data.stats import pixel_stats
from kdlab.data.user import LoaderSource, UserData, as_tensors, labels_of
from kdlab.tasks.image.sources import Sources, tensor_sources

EVAL_BATCH = 256


def data_info(x: torch.Tensor, num_classes: int) -> DataInfo:
    """What a model needs to know about the user's examples: images ``[N, C, H, W]`` get their pixel statistics;
    other shapes (``[N, d]`` vectors, ...) are passed as they are (``DataInfo.shape``)."""
    if x.dim() == 4:
        return DataInfo("user", num_classes, x.shape[1], tuple(x.shape[-2:]), *pixel_stats(x))
    shape = tuple(x.shape[1:]) or (1,)
    return DataInfo("user", num_classes, shape[0], (1, 1), (0.0,), (1.0,), shape=shape)


def class_count(given: int | None, labels: list[torch.Tensor]) -> int:
    """``given``, or one more than the largest label of every split (−1 = unlabelled); at least as many as seen."""
    seen = max((int(y.max()) for y in labels if len(y)), default=-1) + 1
    if given is not None:
        if given < 1 or given < seen:
            raise ConfigError(f"num_classes={given}, but the labels go up to {seen - 1}; give at least {seen}.")
        return given
    if seen < 1:
        raise ConfigError("The training data carry no label ≥ 0; give num_classes=C to say how many classes there are.")
    return seen


def user_sources(
    train: UserData,
    test: UserData | None,
    val: UserData | None,
    *,
    batch_size: int,
    augment: Augment,
    device: torch.device,
    num_classes: int | None = None,
) -> Sources:
    """Sources over the user's objects. A DataLoader keeps its own batches (its batch size is the run's) and order;
    its class count is read from all of its labels, not from a first batch."""
    if isinstance(train, DataLoader):
        if augment.active:
            raise ConfigError(
                "augment= applies to in-memory data; a DataLoader brings its own transforms. Drop augment=, or "
                "pass (x, y) tensors."
            )
        evaluation = {k: _eval_source(v, device) for k, v in (("test", test), ("val", val))}
        labels = [labels_of(train)] + [_labels(v) for v in (test, val) if v is not None]
        first = next(iter(train))
        info = data_info(torch.as_tensor(first[0]), class_count(num_classes, labels))
        return Sources(
            info,
            lambda seed: LoaderSource(train, device),
            LoaderSource(train, device),
            evaluation["val"],
            evaluation["test"],
            fixed_views=False,
            num_train=len(train.dataset) if hasattr(train.dataset, "__len__") else 0,
        )
    x, y = as_tensors(train, "train")
    splits = {k: None if v is None else as_tensors(v, k) for k, v in (("val", val), ("test", test))}
    labels = [y] + [s[1] for s in splits.values() if s is not None]
    return tensor_sources(
        data_info(x, class_count(num_classes, labels)),
        (x, y),
        splits["val"],
        splits["test"],
        batch_size=batch_size,
        eval_batch_size=EVAL_BATCH,
        augment=augment,
        device=device,
    )


def _labels(data: Any) -> torch.Tensor:
    return labels_of(data) if isinstance(data, DataLoader) else as_tensors(data, "evaluation")[1]


def _eval_source(data: UserData | None, device: torch.device) -> Any:
    if data is None:
        return None
    if isinstance(data, DataLoader):
        return LoaderSource(data, device)
    return TensorLoader(*as_tensors(data, "evaluation"), EVAL_BATCH, device=device)
