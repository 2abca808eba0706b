"""Embedded knowledge distillation (EKD) in a depth-level dynamic network (the EKD paper; our reconstruction
from its abstract).

Only the paper's abstract is public: the full net and its sub-nets share one set of weights and are trained
together; a KL term keeps each sub-net's posterior close to the full net's and self-attention distillation on
same-resolution stage outputs enriches the sub-nets' features. Our reconstruction, per batch (x, y):

    L = CE(z_F, y) + Σ_k [ w_ce·CE(z_k, y) + w_kl·τ²·KL(σ(z_F/τ) ‖ σ(z_k/τ)) + w_at·Σ_s ℓ(F_k^s, F_F^s) ]

with ``ℓ`` the attention-transfer loss (Zagoruyko & Komodakis 2017, β/2 = 500 per stage with the mean form)
or SAD (Hou et al. 2019, weight 1). The full net's logits and stage maps are detached (one-way: deeper teaches
shallower) unless ``mutual`` — then the full net is also pulled towards its sub-nets (mutual learning).
The engine runs the full net (its stage maps come through the taps); this method runs each sub-net on the
same batch, and the engine does one backward over the summed terms. The full net needs no external teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.losses.features import attention_transfer, self_attention_distillation
from kdlab.losses.logits import kl_divergence, tau_squared
from kdlab.methods.base import MethodContext, register_method, require
from kdlab.methods.logit import IMAGES
from kdlab.models.depth import DepthSwitch

Attention = Literal["at", "sad", "none"]
DEFAULT_ATTENTION_WEIGHT = {"at": 500.0, "sad": 1.0, "none": 0.0}


@dataclass
class EKDParams:
    """EKD (our reconstruction: only the EKD paper's abstract is public). ``attention_weight`` None → 500 for
    ``at`` (β/2), 1 for ``sad``; ``depths`` lists the sub-nets trained (None: every depth but the full one). Setting
    ``kl_weight = 0`` and ``attention = "none"`` gives plain joint training with labels (condition b)."""

    temperature: float = 3.0
    ce_weight: float = 1.0
    kl_weight: float = 1.0
    attention: Attention = "at"
    attention_weight: float | None = None
    p: float = 2.0
    mutual: bool = False
    depths: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        require(self.p > 0, f"ekd needs method.p > 0; got {self.p}.")


@register_method("ekd", EKDParams, tasks=IMAGES)
class EmbeddedKD(nn.Module):
    """Embedded KD: sub-nets of a depth-switchable student learn from labels and from its full net."""

    needs_teacher = False
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: EKDParams, context: MethodContext) -> None:
        super().__init__()
        net = context.student
        if not isinstance(net, DepthSwitch):
            raise ConfigError(
                f"Method ekd trains a depth-switchable student (ddnn_resnet, ddnn_resnet_basic, ddnn_vgg); "
                f"got {type(net).__name__}."
            )
        subs = [net.check_depth(d) for d in params.depths] if params.depths else list(net.depths)
        subs = [d for d in subs if d != net.full_depth]
        if not subs:
            raise ConfigError(
                f"ekd needs at least one sub-net shallower than the full net {net.full_depth}; "
                f"the student's depths are {', '.join(map(str, net.depths))}."
            )
        net.set_depth(net.full_depth)  # the engine's forward is the full net's
        self.params, self.label_loss = params, context.label_loss
        self.subs = tuple(sorted(set(subs)))
        self.attention_weight = (
            DEFAULT_ATTENTION_WEIGHT[params.attention] if params.attention_weight is None else params.attention_weight
        )
        uses_maps = params.attention != "none" and self.attention_weight > 0
        self.student_layers: tuple[str, ...] = tuple(net.stage_names) if uses_maps else ()
        self._net = (net,)  # not a sub-module: its parameters are the student's, optimised once

    def _map_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.params.attention == "sad":
            return self_attention_distillation(student, teacher)
        return attention_transfer(student, teacher, self.params.p)

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        p, net = self.params, self._net[0]
        terms = {"ce": self.label_loss(student, batch)}
        target = student.logits if p.mutual else student.logits.detach()
        maps = [student.features[n] for n in self.student_layers]
        maps = maps if p.mutual else [m.detach() for m in maps]
        for depth in self.subs:
            logits, stages = net.forward_stages(batch.x, depth)
            if p.ce_weight > 0:
                terms[f"ce_d{depth}"] = p.ce_weight * self.label_loss(ModelOutput(logits=logits), batch)
            if p.kl_weight > 0:
                kl = kl_divergence(logits, target, p.temperature) * tau_squared(p.temperature)
                terms[f"kl_d{depth}"] = p.kl_weight * kl
            if maps:
                pairs = zip(stages, maps, strict=True)
                terms[f"at_d{depth}"] = (
                    self.attention_weight * torch.stack([self._map_loss(s, t) for s, t in pairs]).sum()
                )
        return terms
