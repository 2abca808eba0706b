"""The anatomy of a Hugging Face encoder (BERT, RoBERTa, ELECTRA, DistilBERT, ...): which module paths give the
hidden states and the attention projections, so that methods read them through forward hooks
(:class:`kdlab.training.taps.Taps`).

Why hooks: with the default ``sdpa`` attention, ``output_attentions=True`` returns no attention probabilities in
current transformers, and switching to eager attention to get them costs memory and speed; the query and key
projections give the same probabilities exactly (:func:`kdlab.losses.encoder.attention_probabilities`).

Hidden-state indices follow ``output_hidden_states``: index 0 is the embedding output, index ``i`` (1..L) the output
of transformer block ``i``. Every layer map of :mod:`kdlab.methods.encoder` uses these indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kdlab.core.errors import ConfigError

# names of the self-attention projections inside one block: BERT/RoBERTa/ELECTRA, DistilBERT, and the *_proj style
PROJECTIONS = {
    "query": ("query", "q_lin", "q_proj"),
    "key": ("key", "k_lin", "k_proj"),
    "value": ("value", "v_lin", "v_proj"),
}
# the module whose output is hidden_states[0], by preference: ELECTRA projects its embeddings to the hidden width
EMBEDDING_NAMES = ("embeddings_project", "embeddings")
LayerMap = str | Sequence[Sequence[int]]


@dataclass(frozen=True)
class EncoderAnatomy:
    """Sizes and module paths (as in ``model.named_modules()``) of an encoder with ``num_layers`` blocks.

    ``embeddings``' output is ``hidden_states[0]``, ``layers[i]``'s is ``hidden_states[i + 1]``; ``query[i]``,
    ``key[i]``, ``value[i]`` are the Linear projections ``[B, T, d] → [B, T, num_heads · head_dim]`` of block ``i``'s
    self-attention.
    """

    model_class: str
    num_layers: int
    num_heads: int
    hidden_size: int
    head_dim: int
    embeddings: str
    layers: tuple[str, ...]
    query: tuple[str, ...]
    key: tuple[str, ...]
    value: tuple[str, ...]

    def hidden(self, index: int) -> str:
        """The path whose output is ``hidden_states[index]``, index 0..L (0 = the embeddings)."""
        if not 0 <= index <= self.num_layers:
            raise ConfigError(
                f"Hidden-state index {index} does not exist in the {self.model_class}, which has {self.num_layers} "
                f"blocks: valid indices are 0 (the embeddings) to {self.num_layers} (the last block)."
            )
        return self.embeddings if index == 0 else self.layers[index - 1]


def hidden_tensor(value: Any) -> torch.Tensor:
    """The ``[B, T, d]`` tensor of a tapped embedding or block output. In transformers 5 a block returns the tensor
    itself; older versions returned a tuple whose first element is the hidden state, so both are read."""
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    if not isinstance(value, torch.Tensor) or value.dim() != 3:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ConfigError(f"A tapped encoder layer should give a [B, T, d] hidden state; got {shape}.")
    return value


def _unwrap(model: nn.Module) -> nn.Module:
    # a kdlab Teacher keeps its network(s) in ``members``; the features are read from the first one
    members = getattr(model, "members", None)
    return members[0] if isinstance(members, nn.ModuleList) and len(members) else model


def _not_an_encoder(model: nn.Module, why: str) -> ConfigError:
    return ConfigError(
        f"The {type(model).__name__} is not an encoder that kdlab's token-level methods can read: {why}. They "
        "expect a Hugging Face encoder (BERT, RoBERTa, ELECTRA, DistilBERT or one built alike) with a config giving "
        "num_hidden_layers, num_attention_heads and hidden_size, a ModuleList of that many blocks, and self-attention "
        "query/key/value Linear projections in each block; use a logit method such as kd for other models."
    )


def _projection(block: nn.Module, role: str) -> str | None:
    """The path (inside ``block``) of its self-attention projection ``role``; cross-attention is skipped."""
    for name, module in block.named_modules():
        parts = name.split(".")
        if isinstance(module, nn.Linear) and parts[-1] in PROJECTIONS[role] and "crossattention" not in parts:
            return name
    return None


def _embeddings(modules: dict[str, nn.Module], layers: str) -> str | None:
    """The embedding module closest above the block list ``layers`` (``bert.encoder.layer`` → ``bert.embeddings``)."""
    parts = layers.split(".")
    for depth in range(len(parts) - 1, -1, -1):
        prefix = ".".join(parts[:depth])
        for name in EMBEDDING_NAMES:
            path = f"{prefix}.{name}" if prefix else name
            if path in modules:
                return path
    return None


def encoder_anatomy(model: nn.Module) -> EncoderAnatomy:
    """Find the blocks, the embeddings and the attention projections of a Hugging Face encoder (or of a kdlab
    ``Teacher`` wrapping one) by structure, not by class: the ``nn.ModuleList`` of ``config.num_hidden_layers``
    blocks, the ``*embeddings`` module above it, and the query/key/value Linear layers inside each block."""
    model = _unwrap(model)
    config = getattr(model, "config", None)
    sizes = [getattr(config, key, None) for key in ("num_hidden_layers", "num_attention_heads", "hidden_size")]
    if not all(isinstance(size, int) and size > 0 for size in sizes):
        raise _not_an_encoder(model, "it has no config with num_hidden_layers, num_attention_heads and hidden_size")
    num_layers, num_heads, hidden_size = sizes
    modules = dict(model.named_modules())
    lists = [name for name, m in modules.items() if isinstance(m, nn.ModuleList) and len(m) == num_layers]
    for layers in lists:
        blocks = [f"{layers}.{i}" for i in range(num_layers)]
        found = {role: [_projection(modules[b], role) for b in blocks] for role in PROJECTIONS}
        if all(all(found[role]) for role in PROJECTIONS):
            break
    else:
        raise _not_an_encoder(model, f"no list of {num_layers} blocks with self-attention query/key/value projections")
    embeddings = _embeddings(modules, layers)
    if embeddings is None:
        raise _not_an_encoder(model, f"no embeddings module above its blocks {layers!r}")
    if hidden_size % num_heads:
        raise _not_an_encoder(model, f"its hidden size {hidden_size} is not a multiple of its {num_heads} heads")
    paths = {role: tuple(f"{b}.{p}" for b, p in zip(blocks, found[role], strict=True)) for role in PROJECTIONS}
    widths = {modules[path].out_features for role in PROJECTIONS for path in paths[role]}
    if widths != {hidden_size}:
        raise _not_an_encoder(model, f"its attention projections give widths {sorted(widths)}, not {hidden_size}")
    return EncoderAnatomy(
        model_class=type(model).__name__,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_size=hidden_size,
        head_dim=hidden_size // num_heads,
        embeddings=embeddings,
        layers=tuple(blocks),
        query=paths["query"],
        key=paths["key"],
        value=paths["value"],
    )


def layer_pairs(
    layer_map: LayerMap, student_layers: int, teacher_layers: int, *, method: str, lowest: int = 0
) -> list[tuple[int, int]]:
    """Pairs ``(student index, teacher index)`` of hidden-state indices (0 = embeddings, 1..L = blocks).

    ``"uniform"``: student block m ↔ teacher block m·N/M for m = 1..M (TinyBERT's g(m) = m·N/M), which needs
    N % M = 0; ``"last"``: M ↔ N; a list ``[[s, t], ...]`` gives the pairs, each index from ``lowest`` to its
    model's block count.
    """
    pairs: list[tuple[int, int]]
    if layer_map == "uniform":
        if teacher_layers % student_layers:
            raise ConfigError(
                f"{method}'s uniform layer map pairs student block m with teacher block m·N/M, which needs the "
                f"teacher's {teacher_layers} blocks to be a multiple of the student's {student_layers}; give explicit "
                f"pairs instead, e.g. method.layer_map=[[1, 2], [2, 4], ...] (hidden-state indices: 0 = embeddings, "
                f"1..{student_layers} student blocks, 1..{teacher_layers} teacher blocks), or use layer_map=last."
            )
        step = teacher_layers // student_layers
        return [(m, m * step) for m in range(1, student_layers + 1)]
    if layer_map == "last":
        return [(student_layers, teacher_layers)]
    if isinstance(layer_map, str):
        raise ConfigError(
            f"{method}.layer_map must be 'uniform', 'last' or a list of [student, teacher] hidden-state index pairs; "
            f"got {layer_map!r}."
        )
    pairs = []
    for pair in layer_map:
        ok = len(pair) == 2 and lowest <= pair[0] <= student_layers and lowest <= pair[1] <= teacher_layers
        if not ok:
            raise ConfigError(
                f"{method}.layer_map pair {list(pair)} is out of range: a pair is [student index, teacher index] of "
                f"hidden states, the student's from {lowest} to {student_layers} and the teacher's from {lowest} to "
                f"{teacher_layers} ({'0 = the embeddings, ' if lowest == 0 else ''}i = the output of block i)."
            )
        pairs.append((int(pair[0]), int(pair[1])))
    if not pairs:
        raise ConfigError(f"{method}.layer_map is an empty list; give at least one [student, teacher] pair.")
    return pairs
