"""Data sets: registered builders returning whole data sets as uint8 tensors, and stratified splits.

Importing this package registers every data set in :data:`DATASETS`.
"""

from __future__ import annotations

import inspect
from typing import Any

from kdlab.data import cifar, digits, fashion_mnist, synthetic  # noqa: F401  (registers the data sets)
from kdlab.data.base import DATASETS, DataInfo, ImageData, pixel_stats
from kdlab.data.split import stratified_split, stratified_subset
from kdlab.errors import ConfigError, suggest

__all__ = [
    "DATASETS",
    "DataInfo",
    "ImageData",
    "load_dataset",
    "pixel_stats",
    "stratified_split",
    "stratified_subset",
]


def load_dataset(name: str, **kwargs: Any) -> ImageData:
    """Build the registered data set ``name``; an unknown keyword is a ConfigError listing the valid ones."""
    builder = DATASETS.get(name)
    valid = list(inspect.signature(builder).parameters)
    for key in kwargs:
        if key not in valid:
            raise ConfigError(
                f"Data set {name!r} has no option {key!r}.{suggest(key, valid)} "
                f"Valid options: {', '.join(valid) or '(none)'}."
            )
    return builder(**kwargs)
