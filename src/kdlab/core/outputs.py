"""What a forward pass hands to a method: logits plus the tapped features."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ModelOutput:
    """Outputs of one forward pass.

    ``logits`` is ``[B, c]`` (for an ensemble teacher: the log-mean-softmax reduction);
    ``member_logits`` is ``[B, m, c]`` for an ensemble, else None; ``features`` maps a module path to
    that module's output (see :class:`kdlab.training.taps.Taps`). Structured models (:mod:`kdlab.models.sequence`)
    put their other potentials in ``structure``: a CRF's ``transitions``/``start``/``end``, a parser's
    ``relations``; their ``logits`` are the emissions ``[B, n, L]`` or the arc scores ``[B, n, n+1]``.
    """

    logits: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    member_logits: torch.Tensor | None = None
    structure: dict[str, torch.Tensor] = field(default_factory=dict)
