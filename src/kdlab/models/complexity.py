"""Model cost: multiply-accumulates (MACs) of one forward pass and trainable parameter counts.

MACs count the multiply-adds of convolutions and linear layers only (the convention of the FLOPs
columns in CRD, Tian et al. ICLR 2020, and most KD papers); norms, activations, pooling and biases are
left out, as they are a small fraction and vary between counters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of ``model`` on one example of shape ``input_shape`` (no batch dim: (3, 32, 32)).

    Runs a zero batch of size 1 in eval mode without grad, with forward hooks on every conv and linear
    layer: a conv costs ``out.numel() · (C_in / groups) · prod(kernel)``, a linear
    ``out.numel() · in_features``.
    The model's training mode is restored afterwards.
    """
    total = 0

    def on_conv(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, _CONVS)
        total += output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)

    def on_linear(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Linear)
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, _CONVS):
            handles.append(module.register_forward_hook(on_conv))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(on_linear))
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (``requires_grad``); buffers such as norm statistics are not counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
