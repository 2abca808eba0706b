"""What a forward pass hands to a method (logits plus the tapped features), and the one adapter that reads any
model's output as that."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from kdlab.core.errors import ConfigError


@dataclass
class ModelOutput:
    """Outputs of one forward pass.

    ``logits`` is ``[B, c]`` (for an ensemble teacher: the log-mean-softmax reduction);
    ``member_logits`` is ``[B, m, c]`` for an ensemble, else None; ``features`` maps a module path to
    that module's output (see :class:`kdlab.training.taps.Taps`). Structured models (:mod:`kdlab.models.sequence`)
    put their other potentials in ``structure``: a CRF's ``transitions``/``start``/``end``, a parser's
    ``relations``; their ``logits`` are the emissions ``[B, n, L]`` or the arc scores ``[B, n, n+1]``. ``hidden``
    is a language model's final hidden state ``[B, T, d]`` when it was asked for its hidden states (the chunked
    losses make the logits from it; its ``logits`` may then be empty). A top-k teacher cache gives ``logits``
    ``[R, k]`` (log-probabilities of R trained positions) with ``structure`` ``topk_ids`` and ``tail``.
    """

    logits: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    member_logits: torch.Tensor | None = None
    structure: dict[str, torch.Tensor] = field(default_factory=dict)
    hidden: torch.Tensor | None = None


def as_model_output(out: Any, *, model: str = "the model") -> ModelOutput:
    """Read whatever a model's ``forward`` returned as a :class:`ModelOutput`.

    A ``ModelOutput`` is kept; a tensor is the logits; a tuple or list stands for its first element (models that
    return ``(logits, features)``); a mapping or any other object stands for its ``logits`` entry or attribute (as
    Hugging Face models return). Anything else is a ConfigError naming what the model returned.
    """
    if isinstance(out, ModelOutput):
        return out
    if isinstance(out, torch.Tensor):
        return ModelOutput(logits=out)
    if isinstance(out, (tuple, list)) and out:
        return as_model_output(out[0], model=model)
    logits = out.get("logits") if isinstance(out, Mapping) else getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        states = out.get("hidden_states") if isinstance(out, Mapping) else getattr(out, "hidden_states", None)
        hidden = states[-1] if isinstance(states, tuple | list) and states else None  # transformers: the last is final
        return ModelOutput(logits=logits, hidden=hidden)
    raise ConfigError(
        f"{model} returned a {type(out).__name__}; kdlab reads a model's output as a logits tensor, a tuple or list "
        "whose first element is the logits, or a mapping or object with a 'logits' entry."
    )
