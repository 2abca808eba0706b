"""scikit-learn's 1,797 8x8 handwritten digits (UCI optdigits test set): tiny real images for unit tests."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from kdlab.core.errors import ConfigError, DataError
from kdlab.data.base import DATASETS, IMAGES, DataInfo, ImageData
from kdlab.data.split import stratified_split
from kdlab.data.stats import uint8_pixel_stats

CLASSES = tuple(str(d) for d in range(10))


@functools.lru_cache(maxsize=1)  # parsing the bundled CSV takes ~0.3 s; callers never mutate
def _load_sklearn_digits() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(
            "The digits data set comes with scikit-learn, which is not installed. "
            "Install it with `pip install scikit-learn` (or `pip install kdlab[data]`)."
        ) from None
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32)  # [1797, 8, 8], values 0..16
    return images, torch.as_tensor(bunch.target, dtype=torch.int64)


@DATASETS.register("digits", tasks=IMAGES)
def digits(image_size: int = 8, test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """scikit-learn digits as 1-channel uint8 images (8x8 or resized), with a seeded stratified test split."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ConfigError(f"digits image_size must be a positive integer (8 is native), got {image_size!r}.")
    if not isinstance(test_fraction, float) or not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"digits test_fraction must be a fraction in (0, 1), e.g. 0.2; got {test_fraction!r}.")
    images, labels = _load_sklearn_digits()
    pixels = images.unsqueeze(1) * (255.0 / 16.0)
    if image_size != 8:
        # antialias only matters when shrinking; bilinear upsampling is the same either way.
        pixels = F.interpolate(
            pixels,
            size=(image_size, image_size),
            mode="bilinear",
            align_corners=False,
            antialias=image_size < 8,
        )
    x = pixels.round().clamp(0, 255).to(torch.uint8)
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    mean, std = uint8_pixel_stats(x[train_idx])
    info = DataInfo("digits", 10, 1, (image_size, image_size), mean, std, CLASSES)
    return ImageData(info, x[train_idx], labels[train_idx], x[test_idx], labels[test_idx])
