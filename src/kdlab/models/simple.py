"""Small models: a multi-layer perceptron, a plain CNN and LeNet-5 (LeCun et al., 1998).

LeNet-5 follows the variant in Stanton et al., "Does Knowledge Distillation Really Work?" (NeurIPS 2021):
ReLU activations and average pooling.
"""

import itertools
from typing import Literal

import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.models.common import Normalize, check_positive, conv3x3, init_weights, norm_layer
from kdlab.models.registry import IMAGES, MODELS


class MLP(nn.Module):
    """Flatten → ``depth`` × (Linear, ReLU) → ``fc``; stages are the hidden blocks ``blocks.i``."""

    def __init__(
        self,
        num_classes: int,
        in_features: int,
        hidden: int,
        depth: int,
        mean: tuple[float, ...] | None,
        std: tuple[float, ...] | None,
        in_channels: int | None = None,
    ) -> None:
        super().__init__()
        check_positive(num_classes=num_classes, hidden=hidden, depth=depth)
        self.normalize = Normalize(mean, std, in_channels)
        self.flatten = nn.Flatten()
        widths = [in_features] + [hidden] * depth
        self.blocks = nn.Sequential(*(nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in itertools.pairwise(widths)))
        self.fc = nn.Linear(hidden, num_classes)
        self.stage_names: tuple[str, ...] = tuple(f"blocks.{i}" for i in range(depth))
        self.embedding_name = self.stage_names[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.flatten(self.normalize(x))))


class SimpleCNN(nn.Module):
    """Three stages of ``convs`` × (conv3×3, norm, ReLU), widths w/2w/4w, 2×2 max-pool between stages."""

    stage_names = ("stage1", "stage2", "stage3")
    embedding_name = "flatten"

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        width: int,
        convs: int,
        norm: str,
        mean: tuple[float, ...] | None,
        std: tuple[float, ...] | None,
    ) -> None:
        super().__init__()
        check_positive(num_classes=num_classes, width=width, convs=convs)
        self.normalize = Normalize(mean, std, in_channels)
        widths = [in_channels, width, 2 * width, 4 * width]
        for i in range(3):
            layers: list[nn.Module] = []
            for j in range(convs):
                conv = conv3x3(widths[i] if j == 0 else widths[i + 1], widths[i + 1], bias=norm == "none")
                layers += [conv, norm_layer(norm, widths[i + 1]), nn.ReLU()]
            self.add_module(f"stage{i + 1}", nn.Sequential(*layers))
        # ceil_mode keeps the last row and column of odd-sized maps (15×15 → 8×8, not 7×7).
        self.pool1 = nn.MaxPool2d(2, ceil_mode=True)
        self.pool2 = nn.MaxPool2d(2, ceil_mode=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * width, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.stage1(self.normalize(x)))
        x = self.stage3(self.pool2(self.stage2(x)))
        return self.fc(self.flatten(self.avgpool(x)))


class LeNet5(nn.Module):
    """LeNet-5: two conv stages (6 and 16 filters, 5×5, ReLU, 2×2 average pool) and fc 120 → 84 → classes."""

    stage_names = ("stage1", "stage2")
    embedding_name = "embed"

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: tuple[int, int],
        mean: tuple[float, ...] | None,
        std: tuple[float, ...] | None,
    ) -> None:
        super().__init__()
        check_positive(num_classes=num_classes, in_channels=in_channels)
        # stage1 keeps the size (padding 2) then halves it; stage2 loses 4 (valid 5×5) then halves it.
        height, width = ((s // 2 - 4) // 2 for s in image_size)
        if height < 1 or width < 1:
            raise ConfigError(f"LeNet-5 needs images of at least 12×12, got image_size={tuple(image_size)}.")
        self.normalize = Normalize(mean, std, in_channels)
        self.stage1 = nn.Sequential(nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2))
        self.stage2 = nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU(), nn.AvgPool2d(2))
        self.flatten = nn.Flatten()
        self.embed = nn.Sequential(nn.Linear(16 * height * width, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
        self.fc = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.stage1(self.normalize(x)))
        return self.fc(self.embed(self.flatten(x)))


@MODELS.register("mlp", tasks=IMAGES)
def mlp(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    hidden: int = 256,
    depth: int = 2,
) -> nn.Module:
    """Multi-layer perceptron on flattened pixels: ``depth`` hidden ReLU layers of width ``hidden``."""
    in_features = in_channels * image_size[0] * image_size[1]
    return MLP(num_classes, in_features, hidden, depth, mean, std, in_channels)


@MODELS.register("cnn", tasks=IMAGES)
def cnn(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    norm: Literal["batch", "layer", "none"] = "batch",
    width: int = 16,
    convs: int = 1,
) -> nn.Module:
    """Small plain CNN: three stages of ``convs`` conv3×3-norm-ReLU layers, widths w/2w/4w."""
    return SimpleCNN(num_classes, in_channels, width, convs, norm, mean, std)


@MODELS.register("lenet5", tasks=IMAGES)
def lenet5(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> nn.Module:
    """LeNet-5 (LeCun et al. 1998) as in Stanton et al. 2021: ReLU, average pooling, fc 120-84."""
    return LeNet5(num_classes, in_channels, image_size, mean, std)
