"""The registry of zoo models."""

from kdlab.core.registry import Registry

MODELS: Registry = Registry("model")
