"""Wide residual networks (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016).

WRN-d-k: a 16-channel stem conv, three stages of ``n = (d - 4) / 6`` pre-activation wide basic blocks of
widths 16k, 32k, 64k (strides 1, 2, 2), a final norm-ReLU, global average pooling and ``fc``. Where a block
changes shape its shortcut is a 1×1 conv (no norm) on the pre-activated input, as in the paper's code and
in the CRD/RepDistiller ``wrn_40_2``/``wrn_16_2`` teachers and students.

The stage features ``block1..block3`` are the raw residual-stream outputs (before any norm or ReLU); the
final ``norm``/``act`` of the network give the normalised last stage.
"""

from typing import Literal

import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.models.common import Normalize, check_positive, conv3x3, init_weights, norm_layer
from kdlab.models.registry import IMAGES, MODELS

Norm = Literal["batch", "layer"]


class WideBasicBlock(nn.Module):
    """Pre-activation block: norm-ReLU-conv3×3-norm-ReLU-dropout-conv3×3, plus the (projected) input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float, norm: str) -> None:
        super().__init__()
        self.norm1 = norm_layer(norm, in_channels)
        self.act1 = nn.ReLU()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.norm2 = norm_layer(norm, out_channels)
        self.act2 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.act1(self.norm1(x))
        out = self.conv2(self.dropout(self.act2(self.norm2(self.conv1(activated)))))
        # A projection shortcut reads the pre-activated input; an identity shortcut reads the raw stream.
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(nn.Module):
    """WRN-depth-widen with ``stage_names = ("block1", "block2", "block3")`` and embedding ``flatten``."""

    stage_names = ("block1", "block2", "block3")
    embedding_name = "flatten"

    def __init__(
        self,
        depth: int,
        widen: int,
        dropout: float,
        num_classes: int,
        in_channels: int,
        norm: str,
        mean: tuple[float, ...] | None,
        std: tuple[float, ...] | None,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ConfigError(f"WRN depth must be 6n + 4 with n ≥ 1 (10, 16, 22, 28, 40, ...), got {depth}.")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"WRN dropout must be in [0, 1), got {dropout}.")
        check_positive(widen=widen, num_classes=num_classes, in_channels=in_channels)
        blocks = (depth - 4) // 6
        self.normalize = Normalize(mean, std, in_channels)
        self.conv1 = conv3x3(in_channels, 16)
        channels = 16
        widths = (16 * widen, 32 * widen, 64 * widen)
        for index, (width, stride) in enumerate(zip(widths, (1, 2, 2), strict=True), start=1):
            layers = []
            for block in range(blocks):
                layers.append(WideBasicBlock(channels, width, stride if block == 0 else 1, dropout, norm))
                channels = width
            self.add_module(f"block{index}", nn.Sequential(*layers))
        self.norm = norm_layer(norm, channels)
        self.act = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(self.normalize(x)))))
        return self.fc(self.flatten(self.avgpool(self.act(self.norm(x)))))


@MODELS.register("wrn", tasks=IMAGES)
def wrn(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    norm: Norm = "batch",
    depth: int = 16,
    widen: int = 2,
    dropout: float = 0.0,
) -> nn.Module:
    """Wide ResNet WRN-depth-widen (Zagoruyko & Komodakis 2016); depth must be 6n+4."""
    return WideResNet(depth, widen, dropout, num_classes, in_channels, norm, mean, std)


def _register(depth: int, widen: int) -> None:
    def build(
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: tuple[int, int] = (32, 32),
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        norm: Norm = "batch",
        dropout: float = 0.0,
    ) -> nn.Module:
        return WideResNet(depth, widen, dropout, num_classes, in_channels, norm, mean, std)

    name = f"wrn{depth}_{widen}"
    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"Wide ResNet WRN-{depth}-{widen} (Zagoruyko & Komodakis 2016)."
    MODELS.register(name, tasks=IMAGES)(build)


for _depth, _widen in ((16, 1), (16, 2), (40, 1), (40, 2)):
    _register(_depth, _widen)
