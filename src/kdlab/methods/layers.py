"""Which layers a feature method taps, and checks of their shapes with one-paragraph errors.

Zoo models name their stages (``stage_names``) and their penultimate vector (``embedding_name``); a
method picks its default from those, and the user may name any ``named_modules()`` path instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.core.modes import eval_mode
from kdlab.training.taps import Taps

Default = Literal["stages", "last_stage", "middle_stage", "embedding"]


def pick_layers(
    model: nn.Module, given: Sequence[str], default: Default, *, owner: str, method: str
) -> tuple[str, ...]:
    """``given`` when not empty, else the method's default layers of a zoo model."""
    if given:
        return tuple(given)
    stages = tuple(getattr(model, "stage_names", ()))
    embedding = getattr(model, "embedding_name", None)
    picked: tuple[str, ...] = ()
    if default == "embedding" and embedding:
        picked = (embedding,)
    elif default == "stages":
        picked = stages
    elif default == "last_stage" and stages:
        picked = stages[-1:]
    elif default == "middle_stage" and stages:
        picked = (stages[(len(stages) - 1) // 2],)
    if not picked:
        raise ConfigError(
            f"Method {method!r} needs {owner} layers, and the {owner} ({type(model).__name__}) does not name its "
            f"{'embedding' if default == 'embedding' else 'stages'}. Give module paths with "
            f"method.{owner}_layers=PATH[,PATH] (list them with `kdlab layers`)."
        )
    return picked


def feature_shapes(
    model: nn.Module, layers: Sequence[str], input_shape: Sequence[int], *, owner: str
) -> dict[str, torch.Size]:
    """Per-example output shape of each layer, probed with a zero batch in eval mode (no state changes)."""
    if not layers:
        return {}
    device = next(iter(model.parameters()), torch.empty(0)).device
    with Taps(model, layers, owner=owner) as taps, torch.no_grad(), eval_mode(model):
        model(torch.zeros(2, *input_shape, device=device))
        out = taps.collect()
    return {name: out[name].shape[1:] for name in layers}


def require_rank(method: str, owner: str, layer: str, shape: torch.Size, ranks: set[int], needs: str) -> None:
    """A ConfigError naming the layer, its shape and what the method needs when the rank does not fit."""
    if len(shape) not in ranks:
        raise ConfigError(
            f"Method {method!r} cannot use the {owner} layer {layer!r}: its output per example has shape "
            f"{tuple(shape)}, and {method} needs {needs}. Choose another layer with method.{owner}_layers=PATH "
            "(see `kdlab layers`)."
        )


def require_pairs(method: str, student_layers: Sequence[str], teacher_layers: Sequence[str]) -> None:
    """Layer-to-layer methods pair the i-th student layer with the i-th teacher layer."""
    if len(student_layers) != len(teacher_layers):
        raise ConfigError(
            f"Method {method!r} pairs student and teacher layers one to one, but got {len(student_layers)} student "
            f"layers {list(student_layers)} and {len(teacher_layers)} teacher layers {list(teacher_layers)}."
        )
