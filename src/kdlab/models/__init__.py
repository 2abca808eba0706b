"""The model zoo: registered builders, each taking ``num_classes``, ``in_channels``, ``image_size``,
``mean``, ``std`` (and ``norm`` where the architecture has norms). Importing this package registers them all.
"""

from kdlab.models import ddnn, hf, resnet, sequence, simple, vgg, wrn
from kdlab.models.common import Normalize, norm_layer
from kdlab.models.complexity import count_macs, count_parameters
from kdlab.models.registry import MODELS

__all__ = [
    "MODELS",
    "Normalize",
    "count_macs",
    "count_parameters",
    "ddnn",
    "hf",
    "norm_layer",
    "resnet",
    "sequence",
    "simple",
    "vgg",
    "wrn",
]
