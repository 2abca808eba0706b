"""Byte-offset alignment of two tokenisations of the same text, for distillation across tokenizers.

A teacher and a student with different tokenizers read the same text as different token sequences. Both sequences
spell the same UTF-8 bytes, so they can be aligned by byte offsets (as TRL's GOLD trainer and the ULD paper,
Boizard et al. 2024, "Towards Cross-Tokenizer Distillation: the Universal Logit Distillation Loss for LLMs", do):

1. :func:`token_spans` gives each token's ``[start, end)`` in the text's bytes;
2. :func:`align_groups` cuts both sequences at the bytes where BOTH have a token boundary: the minimal groups of
   consecutive tokens that spell the same bytes;
3. :func:`align_sequences` keeps the positions whose next-token predictions are comparable: the last token of each
   group, on each side. After reading it both models have read exactly the same bytes, and both predict the token
   that starts the next group. :func:`batch_alignments` pads them into ``[B, M]`` tensors with a mask, and
   :func:`gather_positions` picks the logits ``[B, M, V]`` that the cross-tokenizer losses
   (:mod:`kdlab.losses.cross_tokenizer`) compare.

Everything after :func:`token_spans` is a pure function of the span lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import numpy as np
import torch

from kdlab.data.text.tokens import backend, optional

Span = tuple[int, int]
BYTE_FALLBACK = re.compile(r"<0x[0-9A-Fa-f]{2}>")  # SentencePiece's byte-fallback pieces, one byte each
SPACE = "Ġ"  # the byte-level alphabet's character for the space byte 0x20


def token_spans(tokenizer: Any, text: str) -> list[Span]:
    """Each token's ``[start, end)`` in the UTF-8 bytes of ``text``, tokenised without special tokens.

    Two sources, the first that applies:

    - Byte-level BPE (``kdlab.data.lm.byte_level_bpe``, GPT-2, Llama 3, Qwen): a token's string is its bytes in
      GPT-2's byte alphabet, one character per byte, so the spans are running sums of the tokens' byte lengths.
      They are exact also where BPE splits a multi-byte character — ``é`` as ``Ã`` + ``©`` when the vocabulary has
      no merge for it, an emoji in up to four pieces, or one token holding an emoji and three bytes of the next —
      and whatever the offsets say. Used when the tokens' bytes spell the text exactly (checked; a space that
      ``add_prefix_space`` put before the text is dropped from the first token).
    - Otherwise the fast tokenizer's character offsets, made byte offsets by a prefix sum of the characters' UTF-8
      lengths. The pieces of a split character all get the whole character's offsets, so consecutive offsets
      overlap: a token that ends inside a character (the next one starts before its end) ends after its own byte
      count instead — its length in the byte alphabet, or 1 for a SentencePiece ``<0xNN>`` byte-fallback piece.
      Bytes the offsets leave out (whitespace a normaliser drops) go to the token that follows them: each span
      starts where the previous one ends, the first at byte 0.

    The bytes come first because offsets can be trimmed: a ByteLevel post-processor with ``trim_offsets`` (RoBERTa's)
    gives a token of two newlines and three spaces the offsets of the newlines alone, and the offsets cannot tell
    that the three spaces are its own and not the next token's. Either way the spans are contiguous; a token that
    spells none of the text's bytes (a lone ``Ġ`` added by ``add_prefix_space``) gets an empty span.

    Args:
        tokenizer (Any): a fast tokenizer (``transformers`` ``PreTrainedTokenizerFast``) or a
            ``tokenizers.Tokenizer``; its truncation and padding settings are ignored (and left as they are).
        text (str): the text.

    Returns:
        list[tuple[int, int]]: one ``(start, end)`` per token, ``0 = start_0 ≤ end_0 = start_1 ≤ ...``; for
        byte-level BPE ``text.encode()[start:end]`` is the token's own bytes and the last end is the text's length.

    Raises:
        ValueError: if a token ends inside a character and its byte count cannot be read from its string (a
            tokenizer that is neither byte-level nor byte-fallback), or the offsets go backwards.
    """
    encoder = _encoder(tokenizer)
    encoding = encoder.encode(text, add_special_tokens=False)
    data = text.encode("utf-8")
    byte_level = "ByteLevel" in repr(encoder.pre_tokenizer) or "ByteLevel" in repr(encoder.decoder)
    spans = _spans_from_bytes(encoding.tokens, data) if byte_level else None
    return spans if spans is not None else _spans_from_offsets(encoding, text, data, byte_level)


def align_groups(spans_a: Sequence[Span], spans_b: Sequence[Span]) -> list[tuple[range, range]]:
    """The minimal groups of consecutive tokens of A and of B that cover exactly the same bytes.

    A group closes at every byte where both tokenisations have a token boundary, so no group can be split into
    smaller ones that still match; every token of each side is in exactly one group, in order (an empty-span token
    joins the group that follows it). One pass of two pointers that advances the side whose token ends first:
    O(len(A) + len(B)) time and memory.

    Args:
        spans_a (Sequence[tuple[int, int]]): contiguous byte spans of A (:func:`token_spans`).
        spans_b (Sequence[tuple[int, int]]): contiguous byte spans of B, over the same bytes.

    Returns:
        list[tuple[range, range]]: ``(tokens of A, tokens of B)`` per group; group ``g``'s tokens of A span the
        bytes ``[spans_a[a.start][0], spans_a[a.stop - 1][1])``, the same as its tokens of B.

    Raises:
        ValueError: if a span list is not contiguous, or the two do not cover the same bytes.
    """
    groups = list(_groups(spans_a, spans_b))
    done_a, done_b = (groups[-1][0].stop, groups[-1][1].stop) if groups else (0, 0)
    if done_a != len(spans_a) or done_b != len(spans_b):
        ends = (spans_a[-1][1] if spans_a else None, spans_b[-1][1] if spans_b else None)
        raise ValueError(f"The two tokenisations do not cover the same bytes (they end at {ends[0]} and {ends[1]}).")
    return groups


@dataclass(frozen=True)
class AlignedPair:
    """The alignment of one text's student and teacher tokens.

    ``groups`` are the complete groups (:func:`align_groups`) as ``(student tokens, teacher tokens)``.
    ``student_positions`` and ``teacher_positions`` (int64 ``[M]``) are the comparable positions, in the models'
    input sequences: entry ``m`` is the last token of a group on each side, whose logits predict the token that
    starts the next group.
    """

    groups: list[tuple[range, range]]
    student_positions: torch.Tensor
    teacher_positions: torch.Tensor

    def __len__(self) -> int:
        return len(self.student_positions)


def align_sequences(
    student_spans: Sequence[Span],
    teacher_spans: Sequence[Span],
    *,
    student_offset: int = 0,
    teacher_offset: int = 0,
) -> AlignedPair:
    """The student and teacher positions whose next-token predictions are compared, for one text.

    Causal alignment: the logit at position ``t`` predicts token ``t + 1``. At the last token of a group both models
    have read the same bytes, and the next token on both sides starts the next group, so their two predictions
    are of the same event ("what comes after these bytes"). A group's last tokens are kept when BOTH sequences
    have a next token — every group but the last for a whole text. The span lists may cover different lengths of
    the text (two sequences cut at ``max_length`` tokens): the groups after the last common boundary are dropped.

    Args:
        student_spans (Sequence[tuple[int, int]]): the student's token spans (:func:`token_spans`).
        teacher_spans (Sequence[tuple[int, int]]): the teacher's token spans of the same text.
        student_offset (int): index of the student's first text token in its input sequence (1 after a BOS).
        teacher_offset (int): the same for the teacher.

    Returns:
        AlignedPair: the groups and the positions ``[M]`` (int64), offsets added.

    Raises:
        ValueError: if a span list is not contiguous or the two do not start at the same byte.
    """
    groups = list(_groups(student_spans, teacher_spans))
    kept = [(s.stop - 1, t.stop - 1) for s, t in groups if s.stop < len(student_spans) and t.stop < len(teacher_spans)]
    positions = torch.tensor(kept, dtype=torch.int64).reshape(-1, 2)
    return AlignedPair(groups, positions[:, 0] + student_offset, positions[:, 1] + teacher_offset)


def batch_alignments(
    pairs: Sequence[AlignedPair], width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The positions of B texts padded into one batch.

    Args:
        pairs (Sequence[AlignedPair]): one alignment per sequence of the batch (:func:`align_sequences`).
        width (int | None): M, the padded width; None for the longest (a shorter width raises).

    Returns:
        tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ``student_positions`` and ``teacher_positions`` int64
        ``[B, M]`` (0 at padding, a valid index for :func:`gather_positions`) and ``mask`` bool ``[B, M]``, True
        at real positions.
    """
    longest = max((len(pair) for pair in pairs), default=0)
    width = longest if width is None else width
    if width < longest:
        raise ValueError(f"width {width} is shorter than the longest alignment ({longest} positions).")
    student = torch.zeros(len(pairs), width, dtype=torch.int64)
    teacher = torch.zeros(len(pairs), width, dtype=torch.int64)
    mask = torch.zeros(len(pairs), width, dtype=torch.bool)
    for row, pair in enumerate(pairs):
        student[row, : len(pair)] = pair.student_positions
        teacher[row, : len(pair)] = pair.teacher_positions
        mask[row, : len(pair)] = True
    return student, teacher, mask


def gather_positions(logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The logits at the aligned positions: ``out[b, m] = logits[b, positions[b, m]]``.

    Args:
        logits (torch.Tensor): a causal LM's logits ``[B, T, V]``.
        positions (torch.Tensor): int64 ``[B, M]`` (:func:`batch_alignments`), each in ``[0, T)``.

    Returns:
        torch.Tensor: ``[B, M, V]``, differentiable w.r.t. ``logits``.
    """
    rows = torch.arange(logits.shape[0], device=logits.device)[:, None]
    return logits[rows, positions.to(logits.device)]


# --- helpers -----------------------------------------------------------------------------------------------------


def _encoder(tokenizer: Any) -> Any:
    """The ``tokenizers.Tokenizer`` to encode with: the tokenizer's own when it neither truncates nor pads (no copy
    per text), else a private copy without truncation or padding."""
    tokenizers = optional("tokenizers")
    own = tokenizer if isinstance(tokenizer, tokenizers.Tokenizer) else getattr(tokenizer, "backend_tokenizer", None)
    if isinstance(own, tokenizers.Tokenizer) and own.truncation is None and own.padding is None:
        return own
    return backend(tokenizer)


def _byte_alphabet() -> dict[str, int]:
    """GPT-2's ``bytes_to_unicode`` inverted: the character that stands for each byte in a byte-level token."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]  # control bytes, space, 0x7F-0xA0, 0xAD: from U+0100 on
    return {chr(b): b for b in printable} | {chr(256 + n): b for n, b in enumerate(others)}


BYTE_OF = _byte_alphabet()


def _spans_from_bytes(tokens: Sequence[str], data: bytes) -> list[Span] | None:
    """The spans of byte-level tokens from their own bytes; None unless they spell ``data`` exactly."""
    try:
        pieces = [bytes(BYTE_OF[c] for c in token) for token in tokens]
    except KeyError:  # an added token outside the byte alphabet
        return None
    if pieces and pieces[0].startswith(b" ") and not data.startswith(b" "):  # add_prefix_space's space
        pieces[0] = pieces[0][1:]
    if b"".join(pieces) != data:
        return None
    ends = list(accumulate(len(piece) for piece in pieces))
    return list(zip([0, *ends], ends, strict=False))  # the starts run one longer


def _spans_from_offsets(encoding: Any, text: str, data: bytes, byte_level: bool) -> list[Span]:
    """The spans from character offsets (see :func:`token_spans`)."""
    widths = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    widths = 1 + (widths >= 0x80) + (widths >= 0x800) + (widths >= 0x10000)
    char_to_byte = np.concatenate([[0], np.cumsum(widths)]).tolist()  # byte offset of each character boundary
    offsets = [(char_to_byte[s], char_to_byte[e]) for s, e in encoding.offsets]
    spans, cursor = [], 0
    for i, (token, (_, end)) in enumerate(zip(encoding.tokens, offsets, strict=True)):
        if i + 1 < len(offsets) and offsets[i + 1][0] < end:  # the next token starts inside this one's last char
            size = _byte_count(token, byte_level, data, cursor)
            if size is None or not 0 <= size < end - cursor:
                raise ValueError(
                    f"Token {i} ({token!r}) ends inside a multi-byte character, and its byte count cannot be read "
                    "from its string: byte-offset alignment supports byte-level BPE and byte-fallback tokenizers."
                )
            end = cursor + size
        if end < cursor:
            raise ValueError(f"Token {i} ({token!r}) ends at byte {end}, before the previous token ({cursor}).")
        spans.append((cursor, end))
        cursor = end
    return spans


def _byte_count(token: str, byte_level: bool, data: bytes, start: int) -> int | None:
    """How many bytes of the text a token spells, read from its string (None when the string does not say)."""
    if BYTE_FALLBACK.fullmatch(token):
        return 1
    if not byte_level:
        return None
    if token.startswith(SPACE) and data[start : start + 1] != b" ":  # a prefix space the text does not have
        return len(token) - 1
    return len(token)


def _groups(spans_a: Sequence[Span], spans_b: Sequence[Span]) -> Iterator[tuple[range, range]]:
    """The complete groups of two contiguous span lists, up to the last byte both reach (see :func:`align_groups`)."""
    for name, spans in (("A", spans_a), ("B", spans_b)):
        for i, (start, end) in enumerate(spans):
            previous = spans[i - 1][1] if i else start
            if start != previous or end < start:
                raise ValueError(f"The spans of {name} are not contiguous at token {i}: {spans[i]}.")
    if spans_a and spans_b and spans_a[0][0] != spans_b[0][0]:
        raise ValueError(f"The two tokenisations start at different bytes ({spans_a[0][0]} and {spans_b[0][0]}).")
    i = j = first_i = first_j = 0
    while i < len(spans_a) and j < len(spans_b):
        end_a, end_b = spans_a[i][1], spans_b[j][1]
        if end_a < end_b:
            i += 1
        elif end_b < end_a:
            j += 1
        else:
            i, j = i + 1, j + 1
            yield range(first_i, i), range(first_j, j)
            first_i, first_j = i, j
