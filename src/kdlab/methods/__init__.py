"""Distillation methods, registered by name (see :mod:`kdlab.methods.base` for the contract)."""

from kdlab.methods import logit  # noqa: F401  (registers ce, kd)
from kdlab.methods.base import METHODS, Method, MethodContext, build_method, method_params, register_method

__all__ = ["METHODS", "Method", "MethodContext", "build_method", "method_params", "register_method"]
