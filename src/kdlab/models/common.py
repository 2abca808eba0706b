"""Pieces shared by the zoo: input normalisation, the norm-layer switch and small conv helpers.

Every zoo model follows one contract, which the feature taps and the engine rely on:

- ``forward(x)`` takes pixels in [0, 1], ``[B, C, H, W]``, normalises them with its own
  :class:`Normalize` (``self.normalize``, applied first) and returns only the logits ``[B, num_classes]``;
- ``stage_names`` are the ``named_modules()`` paths whose outputs are the stage feature maps;
- ``embedding_name`` is the path whose output is the penultimate vector ``[B, D]`` fed to ``fc``;
- the final classifier is the ``nn.Linear`` called ``fc``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from kdlab.core.errors import ConfigError

NormKind = Literal["batch", "layer", "none"]
NORM_KINDS: tuple[str, ...] = ("batch", "layer", "none")


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; the identity when ``mean`` and ``std`` are both None.

    ``mean``/``std`` are stored as buffers shaped ``[1, C, 1, 1]`` so that they travel with the
    state_dict: a checkpoint carries the input statistics its model was trained with.
    """

    mean: torch.Tensor | None
    std: torch.Tensor | None

    def __init__(
        self,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        channels: int | None = None,
    ) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ConfigError("Give both `mean` and `std` for input normalisation, or neither.")
        if mean is None or std is None:
            self.register_buffer("mean", None)
            self.register_buffer("std", None)
            return
        if len(mean) != len(std) or (channels is not None and len(mean) not in (1, channels)):
            raise ConfigError(
                f"`mean` {tuple(mean)} and `std` {tuple(std)} must have one value per input channel"
                f"{f' ({channels})' if channels is not None else ''}."
            )
        if any(s <= 0 for s in std):
            raise ConfigError(f"`std` {tuple(std)} must be positive.")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None or self.std is None:
            return x
        mean, std = self.mean, self.std
        if x.dim() != 4 and mean.numel() == 1:  # vectors or sequences: one statistic for all features
            mean, std = mean.reshape(()), std.reshape(())
        elif x.dim() != 4 or mean.shape[1] not in (1, x.shape[1]):
            # broadcasting would hide a channel mismatch (3-channel statistics on 1-channel images)
            raise RuntimeError(f"expected images [B, {mean.shape[1]}, H, W], got {tuple(x.shape)}")
        return (x - mean) / std

    def extra_repr(self) -> str:
        if self.mean is None or self.std is None:
            return "identity"
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation after a conv: ``"batch"`` BatchNorm2d, ``"layer"`` GroupNorm(1, C), ``"none"``.

    ``"layer"`` normalises each example over (C, H, W) — a LayerNorm that needs no batch statistics, as in
    Stanton et al., "Does Knowledge Distillation Really Work?" (NeurIPS 2021).
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"Unknown norm {kind!r}. Valid norms: {', '.join(NORM_KINDS)}.")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    """A 3×3 convolution with padding 1 (size-preserving at stride 1)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)


def init_weights(model: nn.Module) -> None:
    """He-normal convs (fan-out, as in He et al. 2015), unit-scale norms, zero biases."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


def check_positive(**values: int) -> None:
    """Raise a :class:`ConfigError` naming any size that is not a positive integer."""
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"`{name}` must be a positive integer, got {value}.")
