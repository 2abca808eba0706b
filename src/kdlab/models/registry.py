"""The registry of zoo models."""

from kdlab.registry import Registry

MODELS: Registry = Registry("model")
