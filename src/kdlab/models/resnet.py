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

from kdlab.core.errors import ConfigError
from kdlab.models.common import Normalize, check_positive, conv3x3, init_weights, norm_layer
from kdlab.models.registry import IMAGES, MODELS

Norm = Literal["batch", "layer"]
Stem = Literal["cifar", "imagenet"]
STEMS: tuple[str, ...] = ("cifar", "imagenet")


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
    """Stem, stages of basic blocks (``blocks[i]`` in stage ``layer{i+1}``), global average pool, ``fc``.

    The CIFAR stem is conv3×3-norm-ReLU at full resolution; ``stem="imagenet"`` is He et al.'s
    conv7×7/2-norm-ReLU + max-pool 3×3/2 (``pool`` after ``act1``). The first stage keeps the resolution,
    each later one halves it in its first block.
    """

    embedding_name = "flatten"

    def __init__(
        self,
        blocks: tuple[int, ...],
        stem_width: int,
        widths: tuple[int, ...],
        num_classes: int,
        in_channels: int,
        norm: str,
        mean: tuple[float, ...] | None,
        std: tuple[float, ...] | None,
        stem: Stem = "cifar",
    ) -> None:
        super().__init__()
        if len(blocks) != len(widths) or not blocks or min(blocks) < 1:
            raise ConfigError(
                f"A ResNet needs one block count ≥ 1 per stage: got blocks {list(blocks)} for widths {list(widths)}."
            )
        if stem not in STEMS:
            raise ConfigError(f"Unknown ResNet stem {stem!r}; valid stems: {', '.join(STEMS)}.")
        check_positive(num_classes=num_classes, in_channels=in_channels, stem_width=stem_width)
        self.stage_names = tuple(f"layer{i}" for i in range(1, len(blocks) + 1))
        self.normalize = Normalize(mean, std, in_channels)
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, stem_width, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = conv3x3(in_channels, stem_width)
        self.norm1 = norm_layer(norm, stem_width)
        self.act1 = nn.ReLU()
        self.pool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        channels = stem_width
        for index, (count, width) in enumerate(zip(blocks, widths, strict=True)):
            layers = []
            for block in range(count):
                layers.append(BasicBlock(channels, width, 2 if block == 0 and index > 0 else 1, norm))
                channels = width
            self.add_module(self.stage_names[index], nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act1(self.norm1(self.conv1(self.normalize(x)))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.fc(self.flatten(self.avgpool(x)))


def cifar_blocks(depth: int) -> int:
    """Blocks per stage of the CIFAR ResNet of ``depth`` = 6n + 2."""
    if depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"CIFAR ResNet depth must be 6n + 2 with n ≥ 1 (8, 14, 20, ...), got {depth}.")
    return (depth - 2) // 6


@MODELS.register("resnet", tasks=IMAGES)
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
    blocks: tuple[int, int, int] | None = None,
) -> nn.Module:
    """CIFAR ResNet of any depth 6n+2 with stage widths w/2w/4w (He et al. 2016); ``blocks`` sets each
    stage's block count instead (e.g. a sub-net of a depth-switchable net)."""
    check_positive(width=width)
    counts = tuple(blocks) if blocks is not None else (cifar_blocks(depth),) * 3
    return CifarResNet(counts, stem_width, (width, 2 * width, 4 * width), num_classes, in_channels, norm, mean, std)


@MODELS.register("resnet_basic", tasks=IMAGES)
def resnet_basic(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    norm: Norm = "batch",
    blocks: tuple[int, ...] = (2, 2, 2, 2),
    width: int = 64,
    stem: Stem = "cifar",
) -> nn.Module:
    """Four-stage basic-block ResNet (He et al. 2016, widths w/2w/4w/8w): ResNet-18 = blocks (2, 2, 2, 2),
    ResNet-34 = (3, 4, 6, 3). ``stem="cifar"`` (3×3, no pooling) suits 28–32 px images."""
    check_positive(width=width)
    widths = tuple(width * 2**i for i in range(len(blocks)))
    return CifarResNet(tuple(blocks), width, widths, num_classes, in_channels, norm, mean, std, stem)


IMAGENET_BLOCKS: dict[int, tuple[int, ...]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _register_basic(depth: int) -> None:
    def build(
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: tuple[int, int] = (32, 32),
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        norm: Norm = "batch",
        stem: Stem = "cifar",
    ) -> nn.Module:
        return resnet_basic(num_classes, in_channels, image_size, mean, std, norm, IMAGENET_BLOCKS[depth], 64, stem)

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = f"ResNet-{depth} (He et al. 2016), basic blocks {IMAGENET_BLOCKS[depth]}, widths 64–512."
    MODELS.register(f"resnet{depth}", tasks=IMAGES)(build)


for _depth in IMAGENET_BLOCKS:
    _register_basic(_depth)


def _register(name: str, depth: int, stem_width: int, width: int) -> None:
    def build(
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: tuple[int, int] = (32, 32),
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        norm: Norm = "batch",
    ) -> nn.Module:
        n = cifar_blocks(depth)
        return CifarResNet(
            (n, n, n), stem_width, (width, 2 * width, 4 * width), num_classes, in_channels, norm, mean, std
        )

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"CIFAR ResNet-{depth} (He et al. 2016; CRD convention), stem {stem_width}, "
        f"stage widths {width}/{2 * width}/{4 * width}."
    )
    MODELS.register(name, tasks=IMAGES)(build)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register(f"resnet{_depth}", _depth, 16, 16)
_register("resnet8x4", 8, 32, 64)
_register("resnet32x4", 32, 32, 64)
