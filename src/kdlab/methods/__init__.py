"""Distillation methods, registered by name (see :mod:`kdlab.methods.base` for the contract)."""

from kdlab.methods import contrastive, embedded, feature, logit, logit_variants, relational  # noqa: F401
from kdlab.methods.base import (
    METHODS,
    Method,
    MethodContext,
    build_method,
    method_params,
    needs_teacher,
    params_mapping,
    register_method,
    uses_source_temperature,
)

__all__ = [
    "METHODS",
    "Method",
    "MethodContext",
    "build_method",
    "method_params",
    "needs_teacher",
    "params_mapping",
    "register_method",
    "uses_source_temperature",
]
