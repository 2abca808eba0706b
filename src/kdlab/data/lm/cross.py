"""The teacher's view of a split when it reads with another tokenizer than the student: each student sequence's text in
the teacher's own tokens, and the positions where the two models' next-token predictions are comparable.

The student's sequences are its byte-level tokens; their text is those bytes. The teacher tokenises the same text
with its own tokenizer (cut to its positions); :func:`kdlab.data.lm.alignment.align_sequences` pairs the last token
of each group of tokens that both tokenisations cut at the same byte. A pair is kept when the student's position
predicts one of its trained tokens (after the prompt). Special tokens (the end-of-text token that ends a document)
spell no bytes: they join the group that follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import torch

from kdlab.core.errors import ConfigError
from kdlab.data.lm.alignment import BYTE_OF, align_sequences, token_spans
from kdlab.data.lm.encode import LMTokens


@dataclass
class CrossTokens:
    """``teacher``: the teacher's tokens of each sequence's text (no prompt: the teacher is read, not trained);
    ``student_positions`` / ``teacher_positions`` int64 ``[N, M]`` (0 past ``aligned[i]``) and ``aligned`` ``[N]``:
    the comparable positions of each sequence."""

    teacher: LMTokens
    student_positions: torch.Tensor
    teacher_positions: torch.Tensor
    aligned: torch.Tensor


def token_bytes(tokenizer: Any) -> torch.Tensor:
    """``[V]`` int64: the bytes each token of a byte-level tokenizer spells (0 for special tokens)."""
    vocabulary = len(tokenizer)
    out = torch.zeros(vocabulary, dtype=torch.long)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    for token_id, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(vocabulary)))):
        if token_id in special or token is None:
            continue
        if any(char not in BYTE_OF for char in token):
            raise ConfigError(
                f"Cross-tokenizer distillation aligns the student's tokens by their bytes, but its tokenizer is not "
                f"byte-level (token {token_id} is {token!r}); give the student a byte-level BPE (GPT-2 style)."
            )
        out[token_id] = len(token)
    return out


def byte_widths(tokenizer: Any) -> torch.Tensor | None:
    """:func:`token_bytes` for a byte-level tokenizer; None for another kind (no per-byte figures then)."""
    try:
        return token_bytes(tokenizer)
    except (ConfigError, TypeError, AttributeError):
        return None


def take_cross(cross: CrossTokens, rows: torch.Tensor) -> CrossTokens:
    """The sequences ``rows`` of a teacher view."""
    teacher = cross.teacher
    part = LMTokens(teacher.input_ids[rows], teacher.lengths[rows], teacher.prompt_lengths[rows], teacher.max_length)
    return CrossTokens(part, cross.student_positions[rows], cross.teacher_positions[rows], cross.aligned[rows])


def _whole_characters(data: bytes, spans: list[tuple[int, int]]) -> tuple[int, int]:
    """``[j, k)``: the student tokens whose bytes form whole UTF-8 characters — a sequence cut from a document may
    begin or end inside a character, which no teacher tokenisation of text can hold."""
    j = next((i for i, (start, end) in enumerate(spans) if start >= len(data) or data[start] & 0xC0 != 0x80), 0)
    for k in range(len(spans), j, -1):
        try:
            data[spans[j][0] : spans[k - 1][1]].decode("utf-8")
            return j, k
        except UnicodeDecodeError:
            continue
    return j, j


def cross_view(tokens: LMTokens, student_tokenizer: Any, teacher_tokenizer: Any, teacher_length: int) -> CrossTokens:
    """The teacher's view of ``tokens`` (see the module docstring); the teacher's sequences are cut to
    ``teacher_length`` tokens."""
    widths = token_bytes(student_tokenizer)
    alphabet = {token_id: token for token_id, token in enumerate(
        student_tokenizer.convert_ids_to_tokens(list(range(len(student_tokenizer)))))}  # fmt: skip
    pairs, teacher_ids = [], []
    for i in range(len(tokens)):
        ids = tokens.input_ids[i, : tokens.lengths[i]].tolist()
        data = b"".join(bytes(BYTE_OF[c] for c in alphabet[t]) if widths[t] else b"" for t in ids)
        ends = list(accumulate(int(widths[t]) for t in ids))
        spans = list(zip([0, *ends], ends, strict=False))
        j, k = _whole_characters(data, spans)
        keep = torch.zeros(0, 2, dtype=torch.long)
        theirs: list[int] = []
        if k > j:
            lo = spans[j][0]
            text = data[lo : spans[k - 1][1]].decode("utf-8")
            theirs = teacher_tokenizer(text, add_special_tokens=False)["input_ids"][:teacher_length]
            if theirs:
                mine = [(start - lo, end - lo) for start, end in spans[j:k]]
                pair = align_sequences(mine, token_spans(teacher_tokenizer, text)[: len(theirs)], student_offset=j)
                positions = torch.stack([pair.student_positions, pair.teacher_positions], 1)
                keep = positions[positions[:, 0] >= max(int(tokens.prompt_lengths[i]), 1) - 1]
        teacher_ids.append(theirs)
        pairs.append(keep)
    width = max((len(t) for t in teacher_ids), default=0)
    grid = torch.zeros(len(tokens), max(width, 1), dtype=torch.long)
    for i, ids_i in enumerate(teacher_ids):
        grid[i, : len(ids_i)] = torch.tensor(ids_i, dtype=torch.long)
    lengths = torch.tensor([len(t) for t in teacher_ids], dtype=torch.long)
    teacher = LMTokens(grid, lengths, torch.zeros_like(lengths), teacher_length)
    m = max((len(p) for p in pairs), default=0)
    student_positions = torch.zeros(len(tokens), max(m, 1), dtype=torch.long)
    teacher_positions = torch.zeros_like(student_positions)
    for i, pair_i in enumerate(pairs):
        student_positions[i, : len(pair_i)] = pair_i[:, 0]
        teacher_positions[i, : len(pair_i)] = pair_i[:, 1]
    return CrossTokens(teacher, student_positions, teacher_positions, torch.tensor([len(p) for p in pairs]))
