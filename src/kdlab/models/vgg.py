"""VGG with batch normalisation (Simonyan & Zisserman, "Very Deep Convolutional Networks", ICLR 2015).

The CIFAR knowledge-distillation layout of CRD/RepDistiller (Tian et al., ICLR 2020): five blocks of
conv3×3-norm-ReLU with widths 64, 128, 256, 512, 512, a 2×2 max-pool after each of the first three blocks
only (so at 32×32 the last two blocks both run at 4×4 — this is what gives VGG8 its 96 M and VGG13 its
285 M multiply-adds), adaptive average pooling to 1×1 and a single ``fc`` (512 → classes). The pools use
``ceil_mode=True`` so that 28×28 inputs go 28 → 14 → 7 → 4. Convs carry no bias: the norm that follows
has its own.

``stage_names`` are ``block1..block5``, each ending in its ReLU; hook ``blockK.<last norm>`` for the
pre-ReLU map.
"""

from typing import Literal

import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.models.common import Normalize, check_positive, conv3x3, init_weights, norm_layer
from kdlab.models.registry import IMAGES, MODELS

Norm = Literal["batch", "layer"]
WIDTHS = (64, 128, 256, 512, 512)
CONVS_PER_BLOCK: dict[int, tuple[int, ...]] = {
    8: (1, 1, 1, 1, 1),
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}


class VGG(nn.Module):
    """Five conv blocks (pool after blocks 1-3), global average pool, ``fc``."""

    stage_names = ("block1", "block2", "block3", "block4", "block5")
    embedding_name = "flatten"

    def __init__(
        self,
        convs: tuple[int, ...],
        num_classes: int,
        in_channels: int,
        norm: str,
        mean: tuple[float, ...] | None,
        std: tuple[float, ...] | None,
    ) -> None:
        super().__init__()
        check_positive(num_classes=num_classes, in_channels=in_channels)
        self.normalize = Normalize(mean, std, in_channels)
        channels = in_channels
        for index, (width, count) in enumerate(zip(WIDTHS, convs, strict=True), start=1):
            layers: list[nn.Module] = []
            for _ in range(count):
                layers += [conv3x3(channels, width), norm_layer(norm, width), nn.ReLU()]
                channels = width
            self.add_module(f"block{index}", nn.Sequential(*layers))
            if index <= 3:
                self.add_module(f"pool{index}", nn.MaxPool2d(2, ceil_mode=True))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.block1(self.normalize(x)))
        x = self.pool3(self.block3(self.pool2(self.block2(x))))
        x = self.block5(self.block4(x))
        return self.fc(self.flatten(self.avgpool(x)))


@MODELS.register("vgg", tasks=IMAGES)
def vgg(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    norm: Norm = "batch",
    convs: tuple[int, int, int, int, int] = (2, 2, 2, 2, 2),
) -> nn.Module:
    """VGG with any number of convs per block (five blocks; ``convs`` (2, 2, 2, 2, 2) is VGG13)."""
    if len(convs) != len(WIDTHS) or min(convs) < 1:
        raise ConfigError(f"VGG needs {len(WIDTHS)} conv counts ≥ 1 (one per block); got {list(convs)}.")
    return VGG(tuple(convs), num_classes, in_channels, norm, mean, std)


def _register(depth: int) -> None:
    def build(
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: tuple[int, int] = (32, 32),
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        norm: Norm = "batch",
    ) -> nn.Module:
        return VGG(CONVS_PER_BLOCK[depth], num_classes, in_channels, norm, mean, std)

    name = f"vgg{depth}"
    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"VGG{depth} with BatchNorm (Simonyan & Zisserman 2015), CRD CIFAR layout, "
        f"convs per block {CONVS_PER_BLOCK[depth]}."
    )
    MODELS.register(name, tasks=IMAGES)(build)


for _depth in CONVS_PER_BLOCK:
    _register(_depth)
