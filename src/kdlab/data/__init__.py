"""Data sets: registered builders returning whole data sets as uint8 tensors, and stratified splits.

Importing this package registers every data set in :data:`DATASETS`.
"""

from __future__ import annotations

from typing import Any

from kdlab.core.typecheck import check_kwargs
from kdlab.data import cifar, digits, domains, fashion_mnist, mnist, synthetic  # noqa: F401  (registers the data sets)
from kdlab.data.base import DATASETS, DataInfo, ImageData
from kdlab.data.lm import corpora as lm_corpora  # noqa: F401  (registers the language-model data sets)
from kdlab.data.sentences import corpora  # noqa: F401  (registers the sentence data sets)
from kdlab.data.split import stratified_split, stratified_subset
from kdlab.data.stats import pixel_stats
from kdlab.data.text import corpora as text_corpora  # noqa: F401  (registers the text data sets)

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
    """Build the registered data set ``name``; options are checked against the builder's signature."""
    builder = DATASETS.get(name)
    return builder(**check_kwargs(builder, kwargs, f"data set {name!r}"))
