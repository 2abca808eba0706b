"""Feature-level distillation losses: FitNets hints, attention transfer, self-attention distillation.

Conventions: a feature map is ``[B, C, H, W]`` and a feature vector ``[B, D]``; student and teacher
maps of one pair may differ in channels (AT and SAD never compare channels) and in spatial size (see
each function for how sizes are matched). Every loss returns a scalar, computes in float32 or better
and is zero when the student's features equal the teacher's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.losses.logits import at_least_float32


def resize_map(features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``[B, C, H, W]`` to ``[B, C, *size]``: adaptive average pooling when the map shrinks in both
    directions (an average over each cell keeps the map's mass), bilinear interpolation otherwise."""
    height, width = features.shape[-2:]
    if (height, width) == tuple(size):
        return features
    if height >= size[0] and width >= size[1]:
        return F.adaptive_avg_pool2d(features, size)
    return F.interpolate(features, size=size, mode="bilinear", align_corners=False)


def hint(regressed_student: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """FitNets hint loss: ``L = mean((r(f_s) − f_t)²)`` over every element (scalar).

    Romero et al., *FitNets: Hints for Thin Deep Nets* (ICLR 2015), Eq. 3, and Ojha et al. §4.1 ("Hint"),
    write ``½ ‖f_t − r(f_s)‖²``; like RepDistiller's ``HintLoss`` and mdistiller's FitNet we take the mean
    over all elements, so the weight (β = 100 there) does not depend on the layer's size.
    ``regressed_student`` is the student feature after the regressor ``r``, of the teacher's shape
    (``[B, C, H, W]`` or ``[B, D]``).
    """
    if regressed_student.shape != teacher_features.shape:
        raise ValueError(
            f"hint needs the regressed student feature in the teacher's shape; got "
            f"{tuple(regressed_student.shape)} and {tuple(teacher_features.shape)}"
        )
    return F.mse_loss(at_least_float32(regressed_student), at_least_float32(teacher_features))


def _check_maps(name: str, student_features: torch.Tensor, teacher_features: torch.Tensor) -> None:
    if student_features.dim() != 4 or teacher_features.dim() != 4:
        raise ValueError(
            f"{name} needs [B, C, H, W] feature maps; got {tuple(student_features.shape)} and "
            f"{tuple(teacher_features.shape)}"
        )


def attention_map(features: torch.Tensor, p: float = 2.0, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Zagoruyko & Komodakis' spatial attention ``a(f) = vec(mean_c |f_c|^p) / ‖vec(mean_c |f_c|^p)‖₂``.

    ``features`` is ``[B, C, H, W]``; returns ``[B, H·W]`` (or ``[B, h·w]`` when ``size=(h, w)`` asks for
    the unnormalised map to be average-pooled to a smaller size first). The mean over channels makes the
    map independent of the channel count, the L2 normalisation of the feature map's scale.
    """
    energy = at_least_float32(features).abs().pow(p).mean(dim=1, keepdim=True)
    if size is not None:
        energy = F.adaptive_avg_pool2d(energy, size)
    return F.normalize(energy.flatten(1), dim=1)


def attention_transfer(student_features: torch.Tensor, teacher_features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Attention-transfer loss of one layer pair: ``L = mean_{b,j} (a(f_s)_{b,j} − a(f_t)_{b,j})²`` (scalar).

    Zagoruyko & Komodakis, *Paying More Attention to Attention* (ICLR 2017), Eq. 2 with the mean form of
    their code and of RepDistiller's ``Attention`` (the method multiplies by β). ``student_features``
    ``[B, Cs, Hs, Ws]``, ``teacher_features`` ``[B, Ct, Ht, Wt]``; when the sizes differ, both maps are
    average-pooled to ``(min(Hs, Ht), min(Ws, Wt))`` before normalising (RepDistiller pools the larger
    feature map instead; pooling ``|f|^p`` keeps the energy of every region whatever the signs of ``f``).
    """
    _check_maps("attention_transfer", student_features, teacher_features)
    size = (
        min(student_features.shape[-2], teacher_features.shape[-2]),
        min(student_features.shape[-1], teacher_features.shape[-1]),
    )
    return (attention_map(student_features, p, size) - attention_map(teacher_features, p, size)).pow(2).mean()


def self_attention_map(features: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Hou et al.'s attention map ``Φ(B(Σ_c f_c²))``: channel-summed squares, bilinearly resized to
    ``size`` when given, then a softmax over the ``H·W`` positions. ``[B, C, H, W]`` → ``[B, H·W]``."""
    energy = at_least_float32(features).pow(2).sum(dim=1, keepdim=True)
    if size is not None and tuple(energy.shape[-2:]) != tuple(size):
        energy = F.interpolate(energy, size=size, mode="bilinear", align_corners=False)
    return F.softmax(energy.flatten(1), dim=1)


def self_attention_distillation(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """SAD loss of one layer pair: ``L = mean_{b,j} (Ψ(f_s)_{b,j} − Ψ(f_t)_{b,j})²`` (scalar).

    Hou et al., *Learning Lightweight Lane Detection CNNs by Self Attention Distillation* (ICCV 2019),
    ``Ψ = Φ ∘ B ∘ G²_sum`` (see :func:`self_attention_map`), an L2 (mean squared) loss between a later
    layer's map (here the teacher's) and an earlier one's (here the student's). ``student_features``
    ``[B, Cs, Hs, Ws]``, ``teacher_features`` ``[B, Ct, Ht, Wt]``; the student's map is resized to
    ``(Ht, Wt)`` by bilinear interpolation when the sizes differ, as Hou et al. upsample before the softmax.
    """
    _check_maps("self_attention_distillation", student_features, teacher_features)
    target = self_attention_map(teacher_features)
    return (self_attention_map(student_features, tuple(teacher_features.shape[-2:])) - target).pow(2).mean()
