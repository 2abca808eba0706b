"""kdlab: knowledge distillation that measures what the student took from the teacher."""

from kdlab.api import DistillResult, distill, evaluate, train
from kdlab.core.version import __version__

__all__ = ["DistillResult", "__version__", "distill", "evaluate", "train"]
