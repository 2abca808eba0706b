"""Sequence-labelling and parsing metrics: token accuracy, chunk (span) F1 as conlleval computes it, UAS and LAS.

All functions take one list per sentence and score every token of every sentence together (micro averages), so
long sentences weigh more than short ones, as in the CoNLL shared tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

Label = TypeVar("Label", str, int)

CHUNK_PREFIXES = ("B", "I", "E", "S")


def _check_shapes(what: str, first: Sequence[Sequence[object]], *others: Sequence[Sequence[object]]) -> int:
    """The number of tokens, after checking every sequence has the same sentences of the same lengths."""
    for other in others:
        if len(other) != len(first):
            raise ValueError(f"{what}: {len(first)} predicted sentences but {len(other)} to compare them with.")
        for index, (left, right) in enumerate(zip(first, other, strict=True)):
            if len(left) != len(right):
                raise ValueError(f"{what}: sentence {index} has {len(left)} predicted tokens but {len(right)} gold.")
    return sum(len(sentence) for sentence in first)


def token_accuracy(predicted: Sequence[Sequence[Label]], gold: Sequence[Sequence[Label]]) -> float:
    """The fraction of tokens, over all sentences, whose predicted label equals the gold one (POS accuracy)."""
    total = _check_shapes("token_accuracy", predicted, gold)
    if total == 0:
        raise ValueError("token_accuracy: there are no tokens to score.")
    right = sum(
        guess == truth
        for sentence, reference in zip(predicted, gold, strict=True)
        for guess, truth in zip(sentence, reference, strict=True)
    )
    return right / total


def _split(tag: str, position: int) -> tuple[str, str]:
    """``(prefix, type)`` of a chunk tag: ``"B-PER"`` → ``("B", "PER")``, ``"O"`` → ``("O", "")``."""
    if tag == "O":
        return "O", ""
    prefix, dash, kind = tag.partition("-")
    if prefix not in CHUNK_PREFIXES or not dash or not kind:
        raise ValueError(
            f"tag {tag!r} at position {position} is not a chunk tag; valid tags are 'O' or B-, I-, E-, S- followed "
            "by a type, such as 'B-PER'."
        )
    return prefix, kind


def _chunk_ends(previous: tuple[str, str], current: tuple[str, str]) -> bool:
    """Whether a chunk that covers the previous token ends before the current one (conlleval's endOfChunk)."""
    previous_prefix, previous_type = previous
    if previous_prefix == "O":
        return False
    if previous_prefix in ("E", "S"):
        return True
    # The previous token is B- or I-: the chunk goes on only through an I- or E- of the same type.
    return current[0] in ("B", "S", "O") or current[1] != previous_type


def _chunk_starts(previous: tuple[str, str], current: tuple[str, str]) -> bool:
    """Whether a chunk starts at the current token (conlleval's startOfChunk)."""
    prefix, kind = current
    if prefix == "O":
        return False
    if prefix in ("B", "S"):
        return True
    # I- or E- continue a chunk of their type, so they start one only after O, E-, S- or another type (IOB1).
    return previous[0] in ("O", "E", "S") or previous[1] != kind


def spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The chunks ``(type, start, end)`` (``end`` inclusive, 0-based) of a tag sequence, by conlleval's rules.

    A chunk starts at ``B-X`` or ``S-X``, and at ``I-X`` or ``E-X`` after ``O``, after a tag of another type or
    after ``E-``/``S-``; it ends before ``O``, ``B-``, ``S-`` or a tag of another type, and right after ``E-`` or
    ``S-``. So IOB1 (``I-PER I-PER O I-LOC``), IOB2 and IOBES are read alike, and an ill-formed IOB2 sequence such
    as ``B-PER I-LOC`` gives two one-token chunks, as conlleval.pl (Tjong Kim Sang, CoNLL-2000) scores it.
    """
    chunks: list[tuple[str, int, int]] = []
    previous = ("O", "")
    start = 0
    for position, tag in enumerate([*tags, "O"]):  # the final O closes a chunk that runs to the end
        current = _split(tag, position)
        if _chunk_ends(previous, current):
            chunks.append((previous[1], start, position - 1))
        if _chunk_starts(previous, current):
            start = position
        previous = current
    return chunks


def span_f1(predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro chunk precision, recall and F1 over all sentences, as conlleval computes them.

    A predicted chunk is correct only when a gold chunk has the same type and the same first and last token, so a
    boundary one token off counts as one wrong prediction and one missed gold chunk. Precision is
    ``correct / predicted`` and recall ``correct / gold`` (0.0 when the denominator is 0); F1 is their harmonic mean
    (0.0 when both are 0). The returned dict also holds the counts ``predicted``, ``gold`` and ``correct``.
    """
    _check_shapes("span_f1", predicted, gold)
    found = {(index, *chunk) for index, sentence in enumerate(predicted) for chunk in spans(sentence)}
    wanted = {(index, *chunk) for index, sentence in enumerate(gold) for chunk in spans(sentence)}
    correct = len(found & wanted)
    precision = correct / len(found) if found else 0.0
    recall = correct / len(wanted) if wanted else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "predicted": len(found),
        "gold": len(wanted),
        "correct": correct,
    }


def attachment_scores(
    predicted_heads: Sequence[Sequence[int]],
    predicted_relations: Sequence[Sequence[str]],
    gold_heads: Sequence[Sequence[int]],
    gold_relations: Sequence[Sequence[str]],
) -> dict[str, float]:
    """Unlabelled and labelled attachment scores over all words, punctuation included.

    ``uas`` is the fraction of words whose predicted head (0 = root, else the 1-based head index) is the gold one;
    ``las`` the fraction whose head and relation are both right. Punctuation is scored like any word (the CoNLL-X
    ``eval.pl`` leaves it out by default, so numbers from it are not directly comparable).
    """
    total = _check_shapes("attachment_scores", predicted_heads, predicted_relations, gold_heads, gold_relations)
    if total == 0:
        raise ValueError("attachment_scores: there are no words to score.")
    attached = labelled = 0
    for words in zip(predicted_heads, predicted_relations, gold_heads, gold_relations, strict=True):
        for head, relation, gold_head, gold_relation in zip(*words, strict=True):
            attached += head == gold_head
            labelled += head == gold_head and relation == gold_relation
    return {"uas": attached / total, "las": labelled / total}
