"""Depth-switchable zoo networks (DDNN, the depth-level dynamic networks of the EKD paper) and the plain zoo model of
each of their depths.

- ``ddnn_resnet``: CIFAR ResNets, depth 6n + 2 ↔ n blocks per stage (20 ⊂ 32 ⊂ 44 ⊂ 56 by default);
- ``ddnn_resnet_basic``: four-stage basic-block ResNets, ResNet-18 ⊂ ResNet-34 ((2, 2, 2, 2) ⊂ (3, 4, 6, 3));
- ``ddnn_vgg``: VGG with BatchNorm, VGG-13 ⊂ 16 ⊂ 19 (convs per block (2, 2, 2, 2, 2) ⊂ (2, 2, 3, 3, 3) ⊂
  (2, 2, 4, 4, 4)).

``budgets`` (``{depth: [blocks per stage]}``) replaces the named depths by any nested budgets. The network
is built at its full depth; :meth:`static_spec` names the plain zoo model that one depth is (used by
:func:`kdlab.tasks.image.depths.export`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.models.common import check_positive
from kdlab.models.depth import BnMode, DepthSwitch, Keep, check_budgets, check_modes, deepest
from kdlab.models.registry import IMAGES, MODELS
from kdlab.models.resnet import IMAGENET_BLOCKS, CifarResNet, Stem, cifar_blocks
from kdlab.models.vgg import CONVS_PER_BLOCK, VGG, WIDTHS

RECALIBRATION_IMAGES = 2048


def _budgets(
    depths: Sequence[int], budgets: Mapping[Any, Any] | None, named: Any, stages: int
) -> dict[int, tuple[int, ...]]:
    if budgets:
        return check_budgets(budgets, stages)
    if not depths:
        raise ConfigError("depths must name at least one depth.")
    return check_budgets({int(d): named(int(d)) for d in depths}, stages)


class SwitchableResNet(DepthSwitch, CifarResNet):
    """A ResNet (CIFAR or four-stage) whose depth is switched at run time."""

    def __init__(
        self,
        budgets: dict[int, tuple[int, ...]],
        keep: str,
        bn: str,
        recalibration_images: int,
        static: tuple[str, dict[str, Any]],
        **resnet: Any,
    ) -> None:
        check_modes(keep, bn)
        CifarResNet.__init__(self, blocks=budgets[deepest(budgets)], **resnet)
        self._static = static
        self._make_switchable(budgets, keep, bn, 1, recalibration_images)

    def static_spec(self, depth: int | str) -> tuple[str, dict[str, Any]]:
        """The zoo model (name, options) of sub-net ``depth``."""
        name, options = self._static
        return name, {**options, "blocks": list(self.budgets[self.check_depth(depth)])}


class SwitchableVGG(DepthSwitch, VGG):
    """VGG whose depth (convs per block) is switched at run time; one conv-norm-ReLU is a block."""

    def __init__(
        self, budgets: dict[int, tuple[int, ...]], keep: str, bn: str, recalibration_images: int, **vgg: Any
    ) -> None:
        check_modes(keep, bn)
        VGG.__init__(self, budgets[deepest(budgets)], **vgg)
        self._norm = vgg["norm"]
        self._make_switchable(budgets, keep, bn, 3, recalibration_images)

    def static_spec(self, depth: int | str) -> tuple[str, dict[str, Any]]:
        return "vgg", {"norm": self._norm, "convs": list(self.budgets[self.check_depth(depth)])}


def _data(num_classes: int, in_channels: int, mean: Any, std: Any) -> dict[str, Any]:
    return {"num_classes": num_classes, "in_channels": in_channels, "mean": mean, "std": std}


@MODELS.register("ddnn_resnet", tasks=IMAGES)
def ddnn_resnet(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    depths: tuple[int, ...] = (20, 32, 44, 56),
    width: int = 16,
    stem_width: int = 16,
    budgets: dict[int, list[int]] | None = None,
    keep: Keep = "first",
    bn: BnMode = "recalibrated",
    recalibration_images: int = RECALIBRATION_IMAGES,
) -> nn.Module:
    """Depth-switchable CIFAR ResNet (DDNN): ResNet-20 ⊂ 32 ⊂ 44 ⊂ 56 in one set of weights."""
    check_positive(width=width, recalibration_images=recalibration_images)
    plan = _budgets(depths, budgets, lambda d: (cifar_blocks(d),) * 3, 3)
    static = ("resnet", {"width": width, "stem_width": stem_width})
    widths = (width, 2 * width, 4 * width)
    return SwitchableResNet(
        plan,
        keep,
        bn,
        recalibration_images,
        static,
        stem_width=stem_width,
        widths=widths,
        norm="batch",
        **_data(num_classes, in_channels, mean, std),
    )


def _imagenet_blocks(depth: int) -> tuple[int, ...]:
    if depth not in IMAGENET_BLOCKS:
        raise ConfigError(
            f"ddnn_resnet_basic knows depths {', '.join(map(str, IMAGENET_BLOCKS))}; got {depth}. "
            "Give budgets: {DEPTH: [n1, n2, n3, n4]} for others."
        )
    return IMAGENET_BLOCKS[depth]


@MODELS.register("ddnn_resnet_basic", tasks=IMAGES)
def ddnn_resnet_basic(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    depths: tuple[int, ...] = (18, 34),
    width: int = 64,
    stem: Stem = "cifar",
    budgets: dict[int, list[int]] | None = None,
    keep: Keep = "first",
    bn: BnMode = "recalibrated",
    recalibration_images: int = RECALIBRATION_IMAGES,
) -> nn.Module:
    """Depth-switchable four-stage ResNet (DDNN): ResNet-18 ⊂ ResNet-34 in one set of weights."""
    check_positive(width=width, recalibration_images=recalibration_images)
    plan = _budgets(depths, budgets, _imagenet_blocks, 4)
    static = ("resnet_basic", {"width": width, "stem": stem})
    widths = tuple(width * 2**i for i in range(4))
    return SwitchableResNet(
        plan,
        keep,
        bn,
        recalibration_images,
        static,
        stem_width=width,
        widths=widths,
        norm="batch",
        stem=stem,
        **_data(num_classes, in_channels, mean, std),
    )


def _vgg_convs(depth: int) -> tuple[int, ...]:
    if depth not in CONVS_PER_BLOCK:
        raise ConfigError(
            f"ddnn_vgg knows depths {', '.join(map(str, CONVS_PER_BLOCK))}; got {depth}. "
            f"Give budgets: {{DEPTH: [{len(WIDTHS)} conv counts]}} for others."
        )
    return CONVS_PER_BLOCK[depth]


@MODELS.register("ddnn_vgg", tasks=IMAGES)
def ddnn_vgg(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    depths: tuple[int, ...] = (13, 16, 19),
    budgets: dict[int, list[int]] | None = None,
    keep: Keep = "first",
    bn: BnMode = "recalibrated",
    recalibration_images: int = RECALIBRATION_IMAGES,
) -> nn.Module:
    """Depth-switchable VGG with BatchNorm (DDNN): VGG-13 ⊂ 16 ⊂ 19 in one set of weights."""
    check_positive(recalibration_images=recalibration_images)
    plan = _budgets(depths, budgets, _vgg_convs, len(WIDTHS))
    return SwitchableVGG(
        plan, keep, bn, recalibration_images, norm="batch", **_data(num_classes, in_channels, mean, std)
    )
