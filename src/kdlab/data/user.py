"""The user's own data — ``(x, y)`` tensors, a ``Dataset`` or a ``DataLoader`` of ``(input, label)`` pairs — read
as tensors or as batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.data.loader import ImageExtras, to_float

UserData = tuple[torch.Tensor, torch.Tensor] | Dataset | DataLoader | str


def labels_of(loader: DataLoader) -> torch.Tensor:
    """Every label a DataLoader yields (its data set's ``targets`` when it has them, else one pass over it)."""
    targets = getattr(loader.dataset, "targets", None)
    if targets is not None:
        return torch.as_tensor(targets).long().reshape(-1)
    return torch.cat([torch.as_tensor(item[1]).long().reshape(-1) for item in loader])


def as_tensors(data: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` tensors from a tuple or a map-style Dataset of ``(x, y)`` pairs."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = torch.as_tensor(data[0]), torch.as_tensor(data[1])
    elif isinstance(data, Dataset) and hasattr(data, "__len__"):
        items = [data[i] for i in range(len(data))]
        if not items:
            raise ConfigError(f"The {what} Dataset is empty.")
        if not isinstance(items[0], (tuple, list)) or len(items[0]) < 2:
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
                inputs = to_float(x.to(self.device, non_blocking=True))
                yield Batch(x=inputs, y=y.to(self.device).long(), index=index, extras=ImageExtras())
            position += len(x)
