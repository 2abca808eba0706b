"""Byte-offset alignment of two real byte-level BPEs (300 and 1,000 tokens) on Python source and non-ASCII text,
checked against the bytes themselves and against brute-force enumeration of every grouping."""

import itertools
import json

import pytest
import torch

from kdlab.data.lm import byte_level_bpe, stdlib_files
from kdlab.data.lm.alignment import (
    AlignedPair,
    align_groups,
    align_sequences,
    batch_alignments,
    gather_positions,
    token_spans,
)
from kdlab.data.lm.alignment import _spans_from_bytes as spans_from_bytes
from kdlab.data.lm.alignment import _spans_from_offsets as spans_from_offsets
from kdlab.losses.cross_tokenizer import uld

NON_ASCII = [
    "café = 'é'\n",
    "名前 = '日本語'  # コメント\n",
    "smile = '😀'; flags = '🇫🇷🇯🇵'\n",
    "mixed: ß∑≈ é😀日 x\n",
]


@pytest.fixture(scope="module")
def source() -> list[str]:
    """A few KB of the standard library's source: the first files, read as text, up to about 8 KB."""
    texts, size = [], 0
    for path in stdlib_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        texts.append(text)
        size += len(text.encode())
        if size > 8000:
            break
    return texts


@pytest.fixture(scope="module")
def small(source):
    return byte_level_bpe(source, 300, name="align-test")


@pytest.fixture(scope="module")
def large(source):
    return byte_level_bpe(source, 1000, name="align-test")


@pytest.fixture(scope="module")
def other(source):
    """A 600-token BPE of the NEXT few KB of the standard library: merges of its own, so its token boundaries cross
    those of the two above (whose merges nest: every 1,000-token boundary is a 300-token boundary)."""
    texts, size = [], 0
    for path in stdlib_files()[len(source) :]:
        texts.append(path.read_text(encoding="utf-8", errors="replace"))
        size += len(texts[-1].encode())
        if size > 8000:
            break
    return byte_level_bpe(texts, 600, name="align-test-other")


@pytest.fixture(scope="module")
def samples(source) -> list[str]:
    return [source[0][:3000], *(text[:800] for text in source[1:]), *NON_ASCII]


def byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-to-unicode table, written out independently: printable Latin-1 bytes map to themselves, the
    others to 256, 257, ... in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    table = {chr(b): b for b in printable}
    table.update({chr(256 + n): b for n, b in enumerate(others)})
    return table


def token_bytes(tokenizer, text: str) -> list[bytes]:
    alphabet = byte_alphabet()
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
    return [bytes(alphabet[c] for c in token) for token in tokens]


def test_spans_tile_the_bytes_and_spell_each_token(small, large, samples):
    for tokenizer in (small, large):
        for text in samples:
            data, spans = text.encode(), token_spans(tokenizer, text)
            assert spans[0][0] == 0 and spans[-1][1] == len(data)
            assert all(a[1] == b[0] and a[0] < a[1] for a, b in itertools.pairwise(spans))
            assert [data[s:e] for s, e in spans] == token_bytes(tokenizer, text)


def test_multi_byte_characters_are_split_where_the_tokens_split_them(small):
    spans = token_spans(small, "a😀b")  # no merge for the emoji in 300 tokens: its four bytes are four tokens
    assert spans == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6)]
    assert token_spans(small, "é") == [(0, 1), (1, 2)]
    assert token_spans(small, "") == []


def test_tokens_holding_part_of_a_character_end_after_their_own_bytes(small):
    """A BPE that has merged the emojis' shared first three bytes (F0 9F 98): its tokens hold a whole emoji and
    three bytes of the next ("ðŁĺĢðŁĺ", 7 bytes), or three bytes of one ("ðŁĺ")."""
    emoji = byte_level_bpe(["x='😀😁😂';y='éèê'"] * 30 + ["=😃", "=😄"] * 30, 300, name="align-test-emoji")
    for text in ["x='😀'", "😀😁", "a😀b", "éè", "=😄 😀😁😂"]:
        data, spans = text.encode(), token_spans(emoji, text)
        assert [data[s:e] for s, e in spans] == token_bytes(emoji, text)
        assert spans[-1][1] == len(data)
        assert align_groups(spans, token_spans(small, text)) == brute_force_finest(spans, token_spans(small, text))
    assert token_spans(emoji, "😀😁") == [(0, 7), (7, 8)]


def variant(tokenizer, **changes):
    """A ``tokenizers.Tokenizer`` copy of ``tokenizer`` with parts of its JSON replaced."""
    tokenizers = pytest.importorskip("tokenizers")
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    for key, value in changes.items():
        spec[key] = value if not isinstance(value, dict) else {**(spec[key] or {}), **value}
    return tokenizers.Tokenizer.from_str(json.dumps(spec))


def test_trimmed_offsets_give_the_untrimmed_spans(large, samples):
    """A ByteLevel post-processor with ``trim_offsets`` drops whitespace from the offsets (GPT-2's " word" gets
    the offsets of "word" alone); the left-out bytes go back to the token that spells them."""
    trimmed = variant(large, post_processor={"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                             "use_regex": True})  # fmt: skip
    example = "a  b  return x\n\n  y = 'é😀'\n"
    untrimmed = large(example, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
    assert trimmed.encode(example, add_special_tokens=False).offsets != untrimmed
    for text in [example, *samples]:
        assert token_spans(trimmed, text) == token_spans(large, text)


def test_a_prefix_space_the_text_does_not_have_spells_no_bytes(small, large):
    prefixed = variant(large, pre_tokenizer={"add_prefix_space": True})
    alphabet = byte_alphabet()
    for text in ["é x", "😀 y", "def f(x):\n", "(x)", " already spaced"]:
        data, spans = text.encode(), token_spans(prefixed, text)
        tokens = [bytes(alphabet[c] for c in t) for t in prefixed.encode(text, add_special_tokens=False).tokens]
        if not text.startswith(" "):
            assert tokens[0].startswith(b" ")
            tokens[0] = tokens[0][1:]  # the added space, which the text does not have
        assert [data[s:e] for s, e in spans] == tokens and spans[-1][1] == len(data)
        assert spans_from_bytes(prefixed.encode(text, add_special_tokens=False).tokens, data) == spans  # not a fallback
        other = token_spans(small, text)
        assert align_groups(spans, other) == brute_force_finest(spans, other)
    assert token_spans(prefixed, "é x")[0] == (0, 0)  # a lone "Ġ": it joins the first group


def test_the_offsets_give_the_same_spans_as_the_bytes_where_they_are_not_trimmed(small, large, samples):
    """The second source of spans (character offsets, pieces of split characters placed by their byte counts)
    agrees with the first (the tokens' own bytes) on every untrimmed byte-level tokenizer here."""
    emoji = byte_level_bpe(["x='😀😁😂';y='éèê'"] * 30 + ["=😃", "=😄"] * 30, 300, name="align-test-emoji")
    prefixed = variant(large, pre_tokenizer={"add_prefix_space": True})
    for tokenizer in (small.backend_tokenizer, large.backend_tokenizer, emoji.backend_tokenizer, prefixed):
        for text in [*samples, "x='😀'", "😀😁", "=😄 😀😁😂", "éè", "é x"]:
            encoding = tokenizer.encode(text, add_special_tokens=False)
            assert spans_from_offsets(encoding, text, text.encode(), True) == token_spans(tokenizer, text)


def test_the_backend_tokenizer_and_a_truncating_tokenizer_give_the_same_spans(small, samples):
    text = samples[0]
    expected = token_spans(small, text)
    assert token_spans(small.backend_tokenizer, text) == expected
    copy = type(small)(tokenizer_object=small.backend_tokenizer.__class__.from_str(small.backend_tokenizer.to_str()))
    copy.backend_tokenizer.enable_truncation(8)
    assert token_spans(copy, text) == expected  # the truncation is ignored, and left in place
    assert copy.backend_tokenizer.truncation["max_length"] == 8


def group_bytes(spans, tokens: range) -> tuple[int, int]:
    return spans[tokens.start][0], spans[tokens.stop - 1][1]


def test_groups_cover_both_sides_in_order_with_identical_byte_spans(small, large, other, samples):
    crossing = 0
    for first, second in ((small, large), (small, other), (large, other)):
        for text in samples:
            a, b = token_spans(first, text), token_spans(second, text)
            groups = align_groups(a, b)
            assert [i for g, _ in groups for i in g] == list(range(len(a)))
            assert [j for _, g in groups for j in g] == list(range(len(b)))
            assert all(group_bytes(a, ga) == group_bytes(b, gb) for ga, gb in groups)
            crossing += sum(len(ga) > 1 and len(gb) > 1 for ga, gb in groups)
    assert crossing > 0  # some groups hold several tokens on BOTH sides (boundaries that cross)


def cut_bytes(spans, cuts: tuple[int, ...]) -> frozenset[int]:
    """The byte positions of the cuts after the given token indices."""
    return frozenset(spans[i][1] for i in cuts)


def brute_force_finest(a, b) -> list[tuple[range, range]]:
    """Every grouping of A (a subset of the cuts between its tokens) that B can also make with equal byte spans;
    the one with the most groups, and the proof that it is the only one so fine."""
    cuts_b = {cut_bytes(b, c) for k in range(len(b)) for c in itertools.combinations(range(len(b) - 1), k)}
    valid = [c for k in range(len(a)) for c in itertools.combinations(range(len(a) - 1), k)
             if cut_bytes(a, c) in cuts_b]  # fmt: skip
    best = max(len(c) for c in valid)
    finest = [c for c in valid if len(c) == best]
    assert len(finest) == 1
    bounds = sorted(cut_bytes(a, finest[0]) | {a[-1][1]})
    groups, i, j = [], 0, 0
    for bound in bounds:
        i2 = next(k for k in range(len(a)) if a[k][1] == bound) + 1
        j2 = next(k for k in range(len(b)) if b[k][1] == bound) + 1
        groups.append((range(i, i2), range(j, j2)))
        i, j = i2, j2
    return groups


TEXTS = [
    "def f(x):\n    return x\n",
    "import os, sys\n",
    "é日😀x",
    "  # ß≈ 名前\n",
    "class A(B): pass",
    "based here are",
    "    # shared co\n",
    "ore rent try:",
    "hello main()",
    " CompilerFlag",
    "prag dist changes",
]


@pytest.mark.parametrize("text", TEXTS)
def test_groups_are_the_finest_possible_by_enumeration(small, large, other, text):
    for first, second in ((small, large), (small, other), (large, other)):
        a, b = token_spans(first, text), token_spans(second, text)
        assert len(a) <= 16 and len(b) <= 16  # 2^15 groupings a side at most
        assert align_groups(a, b) == brute_force_finest(a, b)


def test_crossing_boundaries_make_one_group_of_two_tokens_on_each_side():
    first = byte_level_bpe(["ab ab ab xab"] * 50, 260, name="align-test-ab")  # learns "ab"
    second = byte_level_bpe(["bc bc bc bcx"] * 50, 260, name="align-test-bc")  # learns "bc"
    a, b = token_spans(first, "abc d"), token_spans(second, "abc d")
    assert a[:2] == [(0, 2), (2, 3)] and b[:2] == [(0, 1), (1, 3)]
    groups = align_groups(a, b)
    assert groups[0] == (range(0, 2), range(0, 2))
    assert groups == brute_force_finest(a, b)


def test_identical_tokenizers_give_one_to_one_groups_and_positions(large, samples):
    spans = token_spans(large, samples[0])
    n = len(spans)
    assert align_groups(spans, spans) == [(range(i, i + 1), range(i, i + 1)) for i in range(n)]
    pair = align_sequences(spans, spans)
    assert pair.student_positions.tolist() == pair.teacher_positions.tolist() == list(range(n - 1))
    assert pair.student_positions.dtype == torch.int64


def test_groups_reject_spans_that_do_not_cover_the_same_bytes():
    with pytest.raises(ValueError, match="same bytes"):
        align_groups([(0, 2), (2, 4)], [(0, 2), (2, 5)])
    with pytest.raises(ValueError, match="contiguous"):
        align_groups([(0, 2), (3, 4)], [(0, 4)])
    assert align_groups([], []) == []


def test_positions_are_the_group_ends_that_both_sides_continue():
    student = [(0, 1), (1, 2), (2, 4), (4, 5)]  # cuts at 1 2 4 5
    teacher = [(0, 2), (2, 3), (3, 5)]  # cuts at 2 3 5
    pair = align_sequences(student, teacher, student_offset=1)
    assert pair.groups == [(range(0, 2), range(0, 1)), (range(2, 4), range(1, 3))]
    # group 0 ends at student token 1 and teacher token 0; group 1 ends the text: nothing follows it
    assert pair.student_positions.tolist() == [2] and pair.teacher_positions.tolist() == [0]
    cut = align_sequences(student[:3], teacher)  # the student's sequence was truncated after byte 4
    assert cut.groups == [(range(0, 2), range(0, 1))]
    assert cut.student_positions.tolist() == [1] and cut.teacher_positions.tolist() == [0]


def test_batched_positions_are_padded_with_a_mask():
    one = AlignedPair([], torch.tensor([1, 3, 4]), torch.tensor([0, 2, 5]))
    two = AlignedPair([], torch.tensor([2]), torch.tensor([1]))
    student, teacher, mask = batch_alignments([one, two])
    assert student.tolist() == [[1, 3, 4], [2, 0, 0]] and teacher.tolist() == [[0, 2, 5], [1, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch_alignments([one, two], width=5)[0].shape == (2, 5)
    with pytest.raises(ValueError):
        batch_alignments([one], width=2)
    logits = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)
    picked = gather_positions(logits, student)
    assert torch.equal(picked[0, 1], logits[0, 3]) and torch.equal(picked[1, 0], logits[1, 2])


def test_end_to_end_uld_on_a_real_text_gives_finite_values_and_gradients(small, large, samples):
    pairs = [
        align_sequences(token_spans(small, text), token_spans(large, text), teacher_offset=1)  # teacher with a BOS
        for text in (samples[0], NON_ASCII[3])
    ]
    student_positions, teacher_positions, mask = batch_alignments(pairs)
    length_s = max(len(token_spans(small, t)) for t in (samples[0], NON_ASCII[3]))
    length_t = 1 + max(len(token_spans(large, t)) for t in (samples[0], NON_ASCII[3]))
    generator = torch.Generator().manual_seed(0)
    student_logits = torch.randn(2, length_s, 300, generator=generator, requires_grad=True)
    teacher_logits = torch.randn(2, length_t, 1000, generator=generator)
    values = uld(
        gather_positions(student_logits, student_positions), gather_positions(teacher_logits, teacher_positions), mask
    )
    assert values.shape == mask.shape and torch.isfinite(values).all()
    assert (values[mask] > 0).all() and (values[~mask] == 0).all()
    values.sum().backward()
    assert torch.isfinite(student_logits.grad).all()
    touched = student_logits.grad.abs().sum(-1) > 0  # only the aligned positions receive a gradient
    expected = torch.zeros_like(touched)
    for row, pair in enumerate(pairs):
        expected[row, pair.student_positions] = True
    assert torch.equal(touched, expected)
