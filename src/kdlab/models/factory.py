"""From names to modules: the model zoo's builders and ``package.module:callable``, built for a data set's shape
and classes, and checked on it."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.core.modes import eval_mode
from kdlab.core.outputs import as_model_output
from kdlab.core.typecheck import check_kwargs
from kdlab.data.base import DataInfo
from kdlab.models.registry import MODELS

OBJECT = "object:"  # the name a model passed as a Python object to kdlab.distill/train is recorded under


@dataclass
class ModelSpec:
    """A zoo model name (or ``package.module:callable``) and its keyword options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


def builder(name: str) -> Any:
    """The zoo builder, or the callable named ``package.module:attribute``."""
    if name.startswith(OBJECT):
        raise ConfigError(
            f"The model {name.removeprefix(OBJECT)!r} was given to kdlab.distill/train as a Python object, so it "
            "cannot be rebuilt from its name; call kdlab.distill/train again with the object, or name a zoo model "
            "or package.module:callable."
        )
    if ":" not in name:
        return MODELS.get(name)
    module_name, _, attr = name.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"Cannot import model {name!r} ({exc}). Use package.module:callable, importable here."
        ) from None
    if not callable(obj):
        raise ConfigError(f"Model {name!r} is not callable.")
    return obj


def check_spec(spec: ModelSpec, where: str) -> dict[str, Any]:
    """Check a model's name and options without building it; returns the checked options."""
    return check_kwargs(builder(spec.name), spec.options, f"{where} {spec.name!r}")


def build_model(spec: ModelSpec, info: DataInfo, where: str = "student") -> nn.Module:
    """Build ``spec`` for data described by ``info`` (classes, channels, size and pixel statistics)."""
    fn = builder(spec.name)
    options = check_spec(spec, where)
    data = {
        "num_classes": info.num_classes,
        "in_channels": info.in_channels,
        "image_size": tuple(info.image_size),
        "mean": tuple(info.mean),
        "std": tuple(info.std),
    }
    accepted = inspect.signature(fn).parameters
    data = {k: v for k, v in data.items() if k in accepted and k not in options}
    model = fn(**data, **options)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{where} {spec.name!r} returned a {type(model).__name__}, not an nn.Module.")
    return model


def check_models(models: Sequence[nn.Module], info: DataInfo, device: torch.device, *, role: str) -> None:
    """Each model must take the data's inputs and give one logit per class: probed with a zero batch of two
    examples in eval mode, its output read by :func:`~kdlab.core.outputs.as_model_output`."""
    x = torch.zeros(2, *info.input_shape, device=device)
    what = "images" if not info.shape else "inputs"
    for i, member in enumerate(models):
        who = f"{role} ({type(member).__name__})" if len(models) == 1 else f"{role} {i} ({type(member).__name__})"
        try:
            with torch.no_grad(), eval_mode(member):
                out = member(x)
        except Exception as exc:  # a model that cannot take the inputs may raise anything
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(
                f"{who} cannot take {info.name} {what} of shape {tuple(x.shape[1:])} (a batch {tuple(x.shape)}): "
                f"{first}"
            ) from None
        logits = as_model_output(out, model=who).logits
        if logits.dim() != 2 or logits.shape != (2, info.num_classes):
            raise ConfigError(
                f"{who} gives outputs of shape {tuple(logits.shape)} for a batch of 2, but the data set {info.name!r} "
                f"has {info.num_classes} classes: kdlab needs logits of shape [batch, {info.num_classes}]; use a "
                "model made for the same classes."
            )
