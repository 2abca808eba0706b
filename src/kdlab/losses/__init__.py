"""Pure loss functions: ``(student_x, teacher_x, ..., **hyper_parameters) -> Tensor``."""

from kdlab.losses.logits import (
    ensemble_logits,
    hashed_normal,
    kd,
    kl_divergence,
    label_cross_entropy,
    noisy_soft_labels,
    soft_cross_entropy,
    soft_target_cross_entropy,
    teacher_log_probs,
)

__all__ = [
    "ensemble_logits",
    "hashed_normal",
    "kd",
    "kl_divergence",
    "label_cross_entropy",
    "noisy_soft_labels",
    "soft_cross_entropy",
    "soft_target_cross_entropy",
    "teacher_log_probs",
]
