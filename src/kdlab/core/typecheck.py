"""Check user-supplied values against type hints, with one-paragraph errors.

Used for configuration files, ``key=value`` overrides, model builder keywords and method
hyper-parameter dataclasses: a wrong type names the key, the expected type and the value given.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union

from kdlab.core.errors import ConfigError, suggest


def describe(hint: Any) -> str:
    """A reader's name for a type hint: 'an integer', 'one of sgd, adamw', ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe(a) for a in args)
    if origin in (list, tuple, typing.Sequence):
        return f"a list of {describe(args[0])} values" if args else "a list"
    if origin is dict or hint is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Return ``value`` converted to ``hint`` where that is lossless, else raise ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if float in args and isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number; got {value}.")
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, key)
            except ConfigError:
                continue
        raise _bad(key, hint, value)
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(
            f"{key} must be one of {', '.join(map(str, args))}; got {value!r}."
            f"{suggest(str(value), [str(a) for a in args])}"
        )
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _bad(key, hint, value)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _bad(key, hint, value)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{key} must be a finite number; got {value}.")
            return float(value)
        raise _bad(key, hint, value)
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _bad(key, hint, value)
    if origin in (list, tuple) or hint in (list, tuple):
        return _sequence(value, hint, key)
    if origin is dict or hint is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise _bad(key, hint, value)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return build_dataclass(hint, value, key)
        raise _bad(key, hint, value)
    return value


def _sequence(value: Any, hint: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint) or hint, typing.get_args(hint)
    if isinstance(value, str):
        value = [_scalar(v) for v in value.split(",") if v.strip()] if "," in value else [_scalar(value)]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ConfigError(f"{key} expects {len(args)} values; got {len(value)}: {list(value)!r}.")
        return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    item = args[0] if args else Any
    items = [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _scalar(text: str) -> Any:
    import yaml

    return yaml.safe_load(text.strip())


def _bad(key: str, hint: Any, value: Any) -> ConfigError:
    return ConfigError(f"{key} expects {describe(hint)}; got {value!r} ({type(value).__name__}).")


def field_hints(cls: type) -> dict[str, Any]:
    """The resolved type hints of a dataclass's fields."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def build_dataclass(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """``cls(**values)`` with every value checked; unknown keys are named with the valid ones. A dataclass may list
    options it renamed in a ``RENAMED`` class variable (old name → the new name and what it means): an old name is
    an error that names the new one."""
    hints = field_hints(cls)
    unknown = [k for k in values if k not in hints]
    renamed: Mapping[str, str] = getattr(cls, "RENAMED", {})
    for key in unknown:
        if key in renamed:
            raise ConfigError(f"{where}.{key} is now called {where}.{renamed[key]}")
    if unknown:
        raise ConfigError(
            f"Unknown key {where}.{unknown[0]}.{suggest(unknown[0], hints)} Valid keys of {where}: {', '.join(hints)}."
        )
    return cls(**{k: coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()})


def check_kwargs(fn: Callable[..., Any], kwargs: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Check ``kwargs`` against ``fn``'s annotated keyword parameters, returning the converted values."""
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # annotations that cannot be resolved: check names only
        hints = {}
    params = {n: p for n, p in signature.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    out = {}
    for key, value in kwargs.items():
        if key not in params:
            if takes_any:
                out[key] = value
                continue
            raise ConfigError(
                f"{where} has no option {key!r}.{suggest(key, params)} Valid options: {', '.join(params) or '(none)'}."
            )
        out[key] = coerce(value, hints.get(key, Any), f"{where}.{key}")
    return out
