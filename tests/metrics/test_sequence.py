import random

import pytest

from kdlab.metrics.sequence import attachment_scores, span_f1, spans, token_accuracy


def test_token_accuracy_counts_every_token_of_every_sentence():
    predicted = [["NOUN", "VERB"], ["DET", "NOUN", "PUNCT"]]
    gold = [["NOUN", "NOUN"], ["DET", "NOUN", "PUNCT"]]
    assert token_accuracy(predicted, gold) == pytest.approx(4 / 5)  # micro: not the mean of 1/2 and 3/3
    assert token_accuracy([[1, 2, 3]], [[1, 2, 3]]) == 1.0


def test_token_accuracy_rejects_sentences_of_different_lengths():
    with pytest.raises(ValueError, match="sentence 1 has 2 predicted tokens but 3 gold"):
        token_accuracy([["A"], ["A", "B"]], [["A"], ["A", "B", "C"]])
    with pytest.raises(ValueError, match="2 predicted sentences but 1"):
        token_accuracy([["A"], ["B"]], [["A"]])


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        # IOB1: an I- after O starts a chunk; a run of I- of one type is one chunk.
        (["I-PER", "I-PER", "O", "I-LOC"], [("PER", 0, 1), ("LOC", 3, 3)]),
        # IOB1: B- only separates two adjacent chunks of the same type.
        (["I-PER", "B-PER", "I-PER"], [("PER", 0, 0), ("PER", 1, 2)]),
        # IOB2 with a type switch: B-PER I-LOC is two one-token chunks, as conlleval scores it.
        (["B-PER", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 1)]),
        (["O", "B-ORG", "I-ORG", "I-ORG", "O", "B-PER"], [("ORG", 1, 3), ("PER", 5, 5)]),
        # IOBES: E- and S- close their chunk; an I- right after E- starts a new one.
        (["S-PER", "B-LOC", "E-LOC", "E-LOC"], [("PER", 0, 0), ("LOC", 1, 2), ("LOC", 3, 3)]),
        (
            ["B-LOC", "I-LOC", "E-LOC", "I-LOC", "S-LOC", "S-LOC"],
            [("LOC", 0, 2), ("LOC", 3, 3), ("LOC", 4, 4), ("LOC", 5, 5)],
        ),
        (["E-MISC", "O"], [("MISC", 0, 0)]),
        (["O", "O"], []),
        ([], []),
    ],
)
def test_spans_follow_the_conlleval_rules(tags, expected):
    assert spans(tags) == expected


def random_chunks(rng: random.Random, length: int) -> list[tuple[str, int, int]]:
    chunks, position = [], 0
    while position < length:
        if rng.random() < 0.4:
            end = min(length - 1, position + rng.randrange(3))
            chunks.append((rng.choice(["PER", "LOC", "ORG"]), position, end))
            position = end + 1
        else:
            position += rng.choice([0, 1]) if chunks and position > 0 else 1
    return chunks


def encode(chunks: list[tuple[str, int, int]], length: int, scheme: str) -> list[str]:
    tags = ["O"] * length
    for kind, start, end in chunks:
        for position in range(start, end + 1):
            tags[position] = f"I-{kind}"
        if scheme == "iob2":
            tags[start] = f"B-{kind}"
        elif scheme == "iobes":
            tags[start], tags[end] = (f"S-{kind}", f"S-{kind}") if start == end else (f"B-{kind}", f"E-{kind}")
        elif scheme == "iob1" and any(e == start - 1 and k == kind for k, _, e in chunks):
            tags[start] = f"B-{kind}"  # IOB1 marks B- only where a chunk follows one of its own type
    return tags


@pytest.mark.parametrize("scheme", ["iob1", "iob2", "iobes"])
def test_spans_decode_every_encoding_scheme_exactly(scheme):
    rng = random.Random(0)
    for _ in range(300):
        length = rng.randrange(1, 12)
        chunks = random_chunks(rng, length)
        assert spans(encode(chunks, length, scheme)) == chunks


def test_spans_reject_a_tag_that_is_not_a_chunk_tag():
    with pytest.raises(ValueError, match="'X-PER' at position 1"):
        spans(["O", "X-PER"])


def test_span_f1_by_hand_with_a_boundary_one_token_off():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    # PER ends one token early (wrong), LOC right, ORG missed, one spurious MISC.
    predicted = [["B-PER", "O", "O", "B-LOC"], ["O", "B-MISC"]]
    scores = span_f1(predicted, gold)
    assert (scores["predicted"], scores["gold"], scores["correct"]) == (3, 3, 1)
    assert scores["precision"] == pytest.approx(1 / 3)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(1 / 3)

    scores = span_f1([["B-PER", "I-PER", "O", "O"], ["B-ORG", "O"]], gold)
    assert (scores["precision"], scores["recall"]) == (1.0, pytest.approx(2 / 3))
    assert scores["f1"] == pytest.approx(2 * 1.0 * (2 / 3) / (1.0 + 2 / 3))


def test_span_f1_needs_the_same_type_and_counts_chunks_per_sentence():
    scores = span_f1([["B-PER"], ["B-PER"]], [["B-LOC"], ["B-PER"]])
    assert scores["correct"] == 1 and scores["f1"] == pytest.approx(0.5)
    # the same span in a different sentence is not a match
    assert span_f1([["B-PER"], ["O"]], [["O"], ["B-PER"]])["correct"] == 0


def test_span_f1_is_zero_without_chunks():
    assert span_f1([["O", "O"]], [["O", "O"]]) == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "predicted": 0,
        "gold": 0,
        "correct": 0,
    }
    assert span_f1([["B-PER", "O"]], [["O", "B-PER"]])["f1"] == 0.0


def test_attachment_scores_by_hand():
    gold_heads = [[2, 0, 2], [0, 1]]
    gold_relations = [["nsubj", "root", "p"], ["root", "dobj"]]
    predicted_heads = [[2, 0, 1], [0, 1]]  # word 3 of sentence 1 (punctuation) attached wrongly
    predicted_relations = [["dobj", "root", "p"], ["root", "dobj"]]  # word 1 has the right head, wrong label
    scores = attachment_scores(predicted_heads, predicted_relations, gold_heads, gold_relations)
    assert scores["uas"] == pytest.approx(4 / 5)
    assert scores["las"] == pytest.approx(3 / 5)


def test_attachment_scores_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="sentence 0 has 2 predicted tokens but 1"):
        attachment_scores([[0, 1]], [["root", "x"]], [[0]], [["root"]])
