"""The user's own data — ``(x, y)`` tensors, a ``Dataset`` or a ``DataLoader`` — as kdlab sources."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.data.base import DataInfo
from kdlab.data.loader import to_float
from kdlab.data.policies import Augment
from kdlab.data.stats import pixel_stats
from kdlab.pipeline.config import DataConfig
from kdlab.tasks.image.sources import Sources, config_sources, tensor_sources

UserData = tuple[torch.Tensor, torch.Tensor] | Dataset | DataLoader | str


def as_tensors(data: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` tensors from a tuple or a map-style Dataset of ``(x, y)`` pairs."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = torch.as_tensor(data[0]), torch.as_tensor(data[1])
    elif isinstance(data, Dataset) and hasattr(data, "__len__"):
        items = [data[i] for i in range(len(data))]
        if not items or not isinstance(items[0], (tuple, list)) or len(items[0]) < 2:
            raise ConfigError(
                f"The {what} Dataset must yield (input, label) pairs; it yields {type(items[0]).__name__}."
            )
        x = torch.stack([torch.as_tensor(i[0]) for i in items])
        y = torch.as_tensor([int(i[1]) for i in items])
    else:
        raise ConfigError(
            f"The {what} data must be (x, y) tensors, a map-style torch Dataset of (input, label) pairs, a "
            f"DataLoader, or a data set name; got {type(data).__name__}."
        )
    if len(x) != len(y):
        raise ConfigError(f"The {what} data has {len(x)} inputs but {len(y)} labels.")
    return x, y.long()


@dataclass
class LoaderSource:
    """Batches from the user's DataLoader; ``index`` is the position in the epoch (views are not fixed)."""

    loader: DataLoader
    device: torch.device

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        position = 0
        for k, item in enumerate(self.loader):
            x, y = torch.as_tensor(item[0]), torch.as_tensor(item[1])
            if k >= start:
                index = torch.arange(position, position + len(x), device=self.device)
                yield Batch(x=to_float(x.to(self.device, non_blocking=True)), y=y.to(self.device).long(), index=index)
            position += len(x)


def _info(x: torch.Tensor, y: torch.Tensor, num_classes: int | None) -> DataInfo:
    images = x.dim() == 4
    mean, std = pixel_stats(x) if images else ((0.0,), (1.0,))
    return DataInfo(
        name="user",
        num_classes=num_classes or int(y.max()) + 1,
        in_channels=x.shape[1] if x.dim() > 1 else 1,
        image_size=tuple(x.shape[-2:]) if images else (1, x.shape[-1]),
        mean=mean,
        std=std,
    )


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
    """Sources from the user's data (or, for a data set name, the configured split of that data set)."""
    if isinstance(train, str):
        return config_sources(DataConfig(name=train, batch_size=batch_size, augment=augment), device)
    if isinstance(train, DataLoader):
        first = next(iter(train))
        info = _info(torch.as_tensor(first[0]), torch.as_tensor(first[1]), num_classes)
        evaluation = {k: _eval_source(v, device) for k, v in (("test", test), ("val", val))}
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
    info = _info(x, y, num_classes)
    return tensor_sources(
        info,
        (x, y),
        None if val is None else as_tensors(val, "val"),
        None if test is None else as_tensors(test, "test"),
        batch_size=batch_size,
        eval_batch_size=256,
        augment=augment,
        device=device,
    )


def _eval_source(data: UserData | None, device: torch.device) -> Any:
    if data is None:
        return None
    if isinstance(data, DataLoader):
        return LoaderSource(data, device)
    from kdlab.data.loader import TensorLoader

    return TensorLoader(*as_tensors(data, "evaluation"), 256, device=device)
