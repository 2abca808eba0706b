"""kdlab: knowledge distillation that measures what the student took from the teacher."""

__version__ = "0.1.0"

from kdlab.api import DistillResult, distill, evaluate, train

__all__ = ["DistillResult", "__version__", "distill", "evaluate", "train"]
