"""CIFAR ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, section 4.2).

Basic blocks for every depth, ``n = (depth - 2) / 6`` blocks per stage, and a 1×1 conv + norm shortcut
wherever the shape changes (option B) — the convention of the CRD/RepDistiller benchmark (Tian et al.,
"Contrastive Representation Distillation", ICLR 2020), whose ``resnet8x4``/``resnet32x4`` widen the stem
to 32 and the stages to 64/128/256. ``norm="layer"`` swaps every BatchNorm for GroupNorm(1, C), the
variant studied by Stanton et al. (NeurIPS 2021).

Each block ends in a named ``act2`` ReLU, so a forward hook on ``layerK.i.act2`` sees the pre-activation
sum as its input and the block output as its output.
"""

from typing import Literal

import torch
from torch import nn

from kdlab.errors import ConfigError
from kdlab.models.common import Normalize, check_positive, conv3x3, init_weights, norm_layer
from kdlab.models.registry import MODELS

Norm = Literal["batch", "layer"]


class BasicBlock(nn.Module):
    """conv3×3-norm-ReLU-conv3×3-norm, plus the (projected) input, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.norm1 = norm_layer(norm, out_channels)
        self.act1 = nn.ReLU()
        self.conv2 = conv3x3(out_channels, out_channels)
        self.norm2 = norm_layer(norm, out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                norm_layer(norm, out_channels),
            )
        self.act2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        return self.act2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem conv3×3-norm-ReLU, three stages of basic blocks (strides 1, 2, 2), global average pool, ``fc``."""

    stage_names = ("layer1", "layer2", "layer3")
    embedding_name = "flatten"

    def __init__(
        self,
        depth: int,
        stem_width: int,
        widths: tuple[int, int, int],
        num_classes: int,
        in_channels: int,
        norm: str,
        mean: tuple[float, ...] | None,
        std: tuple[float, ...] | None,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"CIFAR ResNet depth must be 6n + 2 with n ≥ 1 (8, 14, 20, ...), got {depth}.")
        check_positive(num_classes=num_classes, in_channels=in_channels, stem_width=stem_width)
        blocks = (depth - 2) // 6
        self.normalize = Normalize(mean, std, in_channels)
        self.conv1 = conv3x3(in_channels, stem_width)
        self.norm1 = norm_layer(norm, stem_width)
        self.act1 = nn.ReLU()
        channels = stem_width
        for index, (width, stride) in enumerate(zip(widths, (1, 2, 2), strict=True), start=1):
            layers = []
            for block in range(blocks):
                layers.append(BasicBlock(channels, width, stride if block == 0 else 1, norm))
                channels = width
            self.add_module(f"layer{index}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.norm1(self.conv1(self.normalize(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


@MODELS.register("resnet")
def resnet(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    norm: Norm = "batch",
    depth: int = 20,
    width: int = 16,
    stem_width: int = 16,
) -> nn.Module:
    """CIFAR ResNet of any depth 6n+2 with stage widths w/2w/4w (He et al. 2016)."""
    check_positive(width=width)
    return CifarResNet(depth, stem_width, (width, 2 * width, 4 * width), num_classes, in_channels, norm, mean, std)


def _register(name: str, depth: int, stem_width: int, width: int) -> None:
    def build(
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: tuple[int, int] = (32, 32),
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        norm: Norm = "batch",
    ) -> nn.Module:
        return CifarResNet(depth, stem_width, (width, 2 * width, 4 * width), num_classes, in_channels, norm, mean, std)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"CIFAR ResNet-{depth} (He et al. 2016; CRD convention), stem {stem_width}, "
        f"stage widths {width}/{2 * width}/{4 * width}."
    )
    MODELS.register(name)(build)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register(f"resnet{_depth}", _depth, 16, 16)
_register("resnet8x4", 8, 32, 64)
_register("resnet32x4", 32, 32, 64)
