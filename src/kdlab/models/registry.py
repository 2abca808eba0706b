"""The registry of every model kdlab builds by name (image zoo, taggers, parsers); each entry names its tasks."""

from kdlab.core.registry import Registry

MODELS: Registry = Registry("model")
IMAGES = ("image_classification",)  # the task of the image zoo
