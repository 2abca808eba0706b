"""The data-set registry, and the in-memory image data set every image loader starts from."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kdlab.core.registry import Registry


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about the data: shapes, classes and pixel statistics.

    ``mean``/``std`` are per-channel statistics of the training pixels in [0, 1]; zoo models
    normalise their inputs with them, so every loader hands out pixels in [0, 1].
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    shape: tuple[int, ...] = ()  # one example's shape when it is not an image (C, H, W), e.g. (d,) for vectors

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape: ``(C, H, W)`` for images, else :attr:`shape`."""
        return tuple(self.shape) or (self.in_channels, *self.image_size)


@dataclass
class ImageData:
    """A whole data set held as tensors.

    ``train_x``/``test_x`` are uint8 ``[N, C, H, W]`` (pixels 0..255; kept as uint8 until batching,
    four times smaller than float) and ``train_y``/``test_y`` int64 ``[N]`` class indices.
    """

    info: DataInfo
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


DATASETS: Registry = Registry("data set")
IMAGES = ("image_classification",)  # the task of the image data sets
