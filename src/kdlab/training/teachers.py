"""The frozen teacher: one model or an ensemble, always in eval mode, never trained.

Stanton et al. §3: an ensemble predicts the mean of its members' probabilities, so its logits are
the log-mean-softmax of the members' logits (:func:`kdlab.losses.ensemble_logits`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kdlab.core.batch import Inputs, feed
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput, as_model_output
from kdlab.losses import ensemble_logits
from kdlab.training.taps import Taps


class Teacher(nn.Module):
    """Wraps ``members`` so that they stay frozen: eval mode, ``requires_grad=False``, forward under no_grad.

    ``layers`` names modules to tap (only for a single-member teacher: an ensemble's features are
    not one representation). Calling ``.train()`` on a Teacher leaves it in eval mode, so BatchNorm
    statistics and dropout — part of the teacher's function — never change.
    """

    def __init__(self, members: nn.Module | Sequence[nn.Module], layers: Sequence[str] = ()) -> None:
        super().__init__()
        members = [members] if isinstance(members, nn.Module) else list(members)
        if not members:
            raise ConfigError("A teacher needs at least one model; got an empty list.")
        if layers and len(members) > 1:
            raise ConfigError(
                f"Teacher layers {list(layers)} were requested from an ensemble of {len(members)} models; "
                "feature taps need a single teacher model (use one member, or a logit-only method)."
            )
        self.members = nn.ModuleList(members)
        self.members.requires_grad_(False)
        # inference only: channels-last convolutions are faster on CPU (oneDNN) and on tensor cores
        self.members.to(memory_format=torch.channels_last)
        super().train(False)
        self.taps = Taps(self.members[0], layers, owner="teacher") if layers else None

    def tap(self, layers: Sequence[str]) -> None:
        """Tap ``layers`` of the (single) teacher from now on, replacing earlier taps."""
        if self.taps is not None:
            self.taps.remove()
            self.taps = None
        if layers and self.size > 1:
            raise ConfigError(f"Teacher layers {list(layers)} were requested from an ensemble of {self.size} models.")
        if layers:
            self.taps = Taps(self.members[0], layers, owner="teacher")

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)

    @property
    def size(self) -> int:
        return len(self.members)

    @torch.no_grad()
    def forward(self, x: Inputs) -> ModelOutput:
        if isinstance(x, torch.Tensor) and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.size == 1:
            out = as_model_output(feed(self.members[0], x), model="The teacher")
            return ModelOutput(logits=out.logits, features=self.taps.collect() if self.taps else {}, hidden=out.hidden)
        outputs = [as_model_output(feed(m, x), model="A teacher").logits for m in self.members]
        member_logits = torch.stack(outputs, dim=1)
        return ModelOutput(logits=ensemble_logits(member_logits), member_logits=member_logits)
