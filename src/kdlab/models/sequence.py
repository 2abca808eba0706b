"""Sequence models: word + character encoders (BiLSTM, small Transformer), MaxEnt/CRF taggers and a biaffine
first-order dependency parser.

Inputs are the ``x`` of :mod:`kdlab.data.sentences.encoding` (``[B, n, 1 + C]``: word id, then character ids;
word id 0 =
padding). Every model returns a :class:`~kdlab.core.outputs.ModelOutput`: a tagger's ``logits`` are its emissions
``[B, n, L]`` (a CRF adds ``transitions`` ``[L, L]`` (from, to), ``start`` and ``end`` ``[L]``); the parser's
are arc scores ``[B, n, n+1]`` (word m's head h, 0 = ROOT) with relation scores ``[B, n, n+1, R]``.
Models are registered in :data:`kdlab.models.MODELS` for their tasks and built from the vocabulary sizes.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.models.registry import MODELS
from kdlab.ops.crf import Chain

Head = Literal["maxent", "crf"]
INVALID = -1e4  # score of an impossible head: finite, so marginals stay NaN-free under autocast too


class CharCNN(nn.Module):
    """Character embeddings → 1-D convolution (width 3) → max over the word's characters (Ma & Hovy 2016)."""

    def __init__(self, num_chars: int, dim: int = 25, filters: int = 25) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_chars, dim, padding_idx=0)
        self.conv = nn.Conv1d(dim, filters, 3, padding=1)
        self.out_dim = filters

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        batch, n, c = chars.shape
        h = self.conv(self.embed(chars.reshape(batch * n, c)).transpose(1, 2))  # [B·n, F, C]
        h = h.masked_fill((chars.reshape(batch * n, 1, c) == 0), -1e4).amax(2)
        return torch.where(chars[..., :1].reshape(batch * n, 1) > 0, h, torch.zeros_like(h)).view(batch, n, -1)


class WordChar(nn.Module):
    """Word embedding ⊕ character CNN, with dropout."""

    def __init__(self, num_words: int, num_chars: int, word_dim: int, char_dim: int, dropout: float) -> None:
        super().__init__()
        self.words = nn.Embedding(num_words, word_dim, padding_idx=0)
        self.chars = CharCNN(num_chars, char_dim, char_dim) if char_dim > 0 else None
        self.dropout = nn.Dropout(dropout)
        self.out_dim = word_dim + (char_dim if char_dim > 0 else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.words(x[..., 0])]
        if self.chars is not None:
            parts.append(self.chars(x[..., 1:]))
        return self.dropout(torch.cat(parts, -1))


class BiLSTMEncoder(nn.Module):
    """Word + char features → bidirectional LSTM (padding packed away) → ``[B, n, 2·hidden]``."""

    def __init__(
        self, num_words: int, num_chars: int, *, word_dim: int = 64, char_dim: int = 25, hidden: int = 128,
        layers: int = 1, dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.features = WordChar(num_words, num_chars, word_dim, char_dim, dropout)
        self.lstm = nn.LSTM(self.features.out_dim, hidden, layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)  # fmt: skip
        self.dropout = nn.Dropout(dropout)
        self.out_dim = 2 * hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lengths = (x[..., 0] > 0).sum(1).cpu()
        packed = pack_padded_sequence(self.features(x), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.dropout(out)


class TransformerEncoder(nn.Module):
    """Word + char features → learned positions → a small pre-norm Transformer encoder → ``[B, n, dim]``."""

    def __init__(
        self, num_words: int, num_chars: int, *, word_dim: int = 64, char_dim: int = 25, dim: int = 128,
        layers: int = 2, heads: int = 4, dropout: float = 0.1, max_length: int = 512,
    ) -> None:  # fmt: skip
        super().__init__()
        self.features = WordChar(num_words, num_chars, word_dim, char_dim, 0.0)
        self.project = nn.Linear(self.features.out_dim, dim)
        self.positions = nn.Embedding(max_length, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)
        h = self.project(self.features(x)) + self.positions(positions)
        return self.norm(self.encoder(h, src_key_padding_mask=x[..., 0] == 0))


def make_encoder(kind: str, num_words: int, num_chars: int, **options: object) -> nn.Module:
    if kind == "bilstm":
        return BiLSTMEncoder(num_words, num_chars, **options)  # type: ignore[arg-type]
    return TransformerEncoder(num_words, num_chars, **options)  # type: ignore[arg-type]


class Tagger(nn.Module):
    """An encoder with a MaxEnt (softmax per token) or linear-chain CRF output layer over ``num_tags`` labels."""

    def __init__(self, encoder: nn.Module, num_tags: int, head: Head = "crf") -> None:
        super().__init__()
        self.encoder, self.head = encoder, head
        self.emit = nn.Linear(encoder.out_dim, num_tags)
        if head == "crf":
            self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
            self.start = nn.Parameter(torch.zeros(num_tags))
            self.end = nn.Parameter(torch.zeros(num_tags))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        emissions = self.emit(self.encoder(x))
        structure = {}
        if self.head == "crf":
            structure = {"transitions": self.transitions, "start": self.start, "end": self.end}
        return ModelOutput(logits=emissions, structure=structure)


def chain_of(output: ModelOutput, mask: torch.Tensor) -> Chain:
    """The CRF potentials of a CRF tagger's output (float32 even under autocast)."""
    s = output.structure
    return Chain(output.logits.float(), s["transitions"].float(), s["start"].float(), s["end"].float(), mask)


class MLP(nn.Sequential):
    def __init__(self, inputs: int, outputs: int, dropout: float) -> None:
        super().__init__(nn.Linear(inputs, outputs), nn.LeakyReLU(0.1), nn.Dropout(dropout))


class BiaffineParser(nn.Module):
    """First-order graph-based parser (Dozat & Manning 2017): a ROOT vector is put before the words, head and
    dependent MLPs, a biaffine arc scorer ``s(h→m) = d_mᵀ W g_h + g_hᵀ u`` and a biaffine relation classifier.
    Impossible heads (padding, the word itself) score ``INVALID``."""

    def __init__(
        self, encoder: nn.Module, num_relations: int, *, arc_dim: int = 128, relation_dim: int = 64,
        dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.encoder = encoder
        d = encoder.out_dim
        self.root = nn.Parameter(torch.zeros(d))
        self.arc_dep, self.arc_head = MLP(d, arc_dim, dropout), MLP(d, arc_dim, dropout)
        self.rel_dep, self.rel_head = MLP(d, relation_dim, dropout), MLP(d, relation_dim, dropout)
        self.arc_weight = nn.Parameter(torch.zeros(arc_dim, arc_dim))
        self.arc_bias = nn.Parameter(torch.zeros(arc_dim))
        self.rel_weight = nn.Parameter(torch.zeros(num_relations, relation_dim + 1, relation_dim + 1))
        nn.init.xavier_uniform_(self.rel_weight)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        words = self.encoder(x)  # [B, n, d]
        batch, n, _ = words.shape
        nodes = torch.cat([self.root.expand(batch, 1, -1), words], 1)  # [B, n+1, d]
        dep, head = self.arc_dep(words), self.arc_head(nodes)
        arcs = torch.einsum("bmi,ij,bhj->bmh", dep, self.arc_weight, head) + (head @ self.arc_bias)[:, None, :]
        ones = words.new_ones(batch, n, 1)
        rel_dep = torch.cat([self.rel_dep(words), ones], -1)
        rel_head = torch.cat([self.rel_head(nodes), words.new_ones(batch, n + 1, 1)], -1)
        relations = torch.einsum("bmi,rij,bhj->bmhr", rel_dep, self.rel_weight, rel_head)
        present = x[..., 0] > 0
        lengths = present.sum(1)
        heads = torch.arange(n + 1, device=x.device)
        valid = (heads[None, None, :] <= lengths[:, None, None]) & (
            heads[None, None, :] != torch.arange(1, n + 1, device=x.device)[None, :, None]
        )
        return ModelOutput(logits=arcs.masked_fill(~valid, INVALID), structure={"relations": relations})


def _encoder(kind: str, num_words: int, num_chars: int, options: dict) -> nn.Module:
    if kind not in ("bilstm", "transformer"):
        from kdlab.core.errors import ConfigError

        raise ConfigError(f"Unknown encoder {kind!r}; valid: bilstm, transformer.")
    return make_encoder(kind, num_words, num_chars, **options)


@MODELS.register("tagger", tasks=("sequence_labelling", "dependency_parsing"))
def tagger(
    num_words: int, num_chars: int, num_labels: int, *, head: Head = "crf", encoder: str = "bilstm",
    word_dim: int = 64, char_dim: int = 25, hidden: int = 128, layers: int = 1, dropout: float = 0.0,
) -> Tagger:  # fmt: skip
    """A BiLSTM (or Transformer: ``encoder=transformer``, ``hidden`` = model width) tagger with a ``crf`` or
    ``maxent`` output; for parsing data it is the sequence-labelling parser (labels = head offset + relation)."""
    size = {"hidden": hidden} if encoder == "bilstm" else {"dim": hidden}
    options = {"word_dim": word_dim, "char_dim": char_dim, "layers": layers, "dropout": dropout, **size}
    return Tagger(_encoder(encoder, num_words, num_chars, options), num_labels, head)


@MODELS.register("biaffine", tasks=("dependency_parsing",))
def biaffine(
    num_words: int, num_chars: int, num_labels: int, *, encoder: str = "bilstm", word_dim: int = 64,
    char_dim: int = 25, hidden: int = 128, layers: int = 2, arc_dim: int = 128, relation_dim: int = 64,
    dropout: float = 0.0,
) -> BiaffineParser:  # fmt: skip
    """The biaffine first-order dependency parser; ``num_labels`` = number of relations."""
    size = {"hidden": hidden} if encoder == "bilstm" else {"dim": hidden}
    options = {"word_dim": word_dim, "char_dim": char_dim, "layers": layers, "dropout": dropout, **size}
    encoder_module = _encoder(encoder, num_words, num_chars, options)
    return BiaffineParser(encoder_module, num_labels, arc_dim=arc_dim, relation_dim=relation_dim, dropout=dropout)


KINDS = ("crf", "maxent", "parser", "labeler")


def kind_of(model: nn.Module, task: str) -> str:
    """``crf`` / ``maxent`` (taggers), ``parser`` (biaffine) or ``labeler`` (a MaxEnt tagger on parsing data)."""
    if isinstance(model, BiaffineParser):
        if task != "parsing":
            raise ConfigError("The biaffine parser needs parsing data (heads and relations); this data set is tagging.")
        return "parser"
    if isinstance(model, Tagger):
        if task == "parsing":
            if model.head != "maxent":
                raise ConfigError("A sequence-labelling parser is a tagger with head=maxent; got head=crf.")
            return "labeler"
        return model.head
    raise ConfigError(f"{type(model).__name__} is not a kdlab sequence model (tagger or biaffine).")
