"""Distillation methods, in one registry for every task (see :mod:`kdlab.methods.base` for the contract)."""

from kdlab.methods import contrastive, decoupled, embedded, encoder, feature, lm, logit, relational, structured  # noqa: F401
from kdlab.methods.base import (
    METHODS,
    LabelLoss,
    Method,
    MethodContext,
    build_method,
    check_task,
    method_params,
    needs_teacher,
    params_mapping,
    register_method,
    uses_source_temperature,
)

__all__ = [
    "METHODS",
    "LabelLoss",
    "Method",
    "MethodContext",
    "build_method",
    "check_task",
    "method_params",
    "needs_teacher",
    "params_mapping",
    "register_method",
    "uses_source_temperature",
]
