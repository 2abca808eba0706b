"""A seeded Gaussian mixture of images of any shape: learnable but not trivial; for tests and timing."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.core.errors import ConfigError
from kdlab.data.base import DATASETS, IMAGES, DataInfo, ImageData
from kdlab.data.stats import uint8_pixel_stats

# Prototypes share one smooth base image and differ by a smaller class pattern, so classes overlap
# once noise is added: telling them apart needs the whole image, not one bright pixel.
BASE_RANGE = (0.2, 0.8)
CLASS_AMPLITUDE = 0.25
CHUNK = 256


def _smooth(shape: tuple[int, int, int, int], image_size: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform [-1, 1] values on a coarse ``shape`` grid, upsampled bilinearly to ``image_size``."""
    coarse = torch.rand(shape, generator=generator) * 2 - 1
    return F.interpolate(coarse, size=(image_size, image_size), mode="bilinear", align_corners=True)


def _check(name: str, value: object, low: float, integer: bool = True) -> None:
    bad = isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
    if bad or value < low:  # type: ignore[operator]
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"synthetic {name} must be {kind} >= {low}, got {value!r}.")


@DATASETS.register("synthetic", tasks=IMAGES)
def synthetic(
    num_classes: int = 4,
    channels: int = 1,
    image_size: int = 8,
    train_size: int = 512,
    test_size: int = 256,
    noise: float = 0.25,
    seed: int = 0,
) -> ImageData:
    """Images = a smooth per-class prototype + Gaussian noise of std ``noise``, clipped to [0, 1]; uint8."""
    for name, value, low in (
        ("num_classes", num_classes, 2),
        ("channels", channels, 1),
        ("image_size", image_size, 2),
        ("train_size", train_size, 1),
        ("test_size", test_size, 1),
    ):
        _check(name, value, low)
    _check("noise", noise, 0.0, integer=False)
    generator = torch.Generator().manual_seed(seed)
    grid = max(2, image_size // 2)
    low, high = BASE_RANGE
    base = low + (high - low) * (_smooth((1, channels, grid, grid), image_size, generator) + 1) / 2
    # More coarse values per image make classes easier to tell apart; shrinking the class pattern by the
    # cube root of their number keeps the difficulty similar across shapes (1/sqrt over-corrects: class
    # means estimated from a few hundred samples then drown in noise). Reference shape: 1x4x4 (8x8 images).
    amplitude = CLASS_AMPLITUDE * (16 / (channels * grid * grid)) ** (1 / 3)
    prototypes = base + amplitude * _smooth((num_classes, channels, grid, grid), image_size, generator)

    # Work in grey levels, with +0.5 folded in so that truncating to uint8 rounds to the nearest level.
    levels = prototypes * 255 + 0.5

    def sample(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Balanced classes in a random order; float work in place, in blocks of CHUNK images, so that a
        # CIFAR-sized set (50,000x3x32x32) takes seconds and only a few MB of float temporaries.
        labels = (torch.arange(count) % num_classes)[torch.randperm(count, generator=generator)]
        images = torch.empty(count, channels, image_size, image_size, dtype=torch.uint8)
        for start in range(0, count, CHUNK):
            block = labels[start : start + CHUNK]
            pixels = torch.randn(len(block), channels, image_size, image_size, generator=generator)
            pixels.mul_(noise * 255).add_(levels[block]).clamp_(0, 255.99)
            images[start : start + len(block)] = pixels.to(torch.uint8)
        return images, labels

    train_x, train_y = sample(train_size)
    test_x, test_y = sample(test_size)
    mean, std = uint8_pixel_stats(train_x)
    classes = tuple(f"class{c}" for c in range(num_classes))
    info = DataInfo("synthetic", num_classes, channels, (image_size, image_size), mean, std, classes)
    return ImageData(info, train_x, train_y, test_x, test_y)
