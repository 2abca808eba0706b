"""Language-model examples as token sequences: cut, packed, prompted, truncated and cached exactly as documented."""


import pytest
import torch

from kdlab.core.errors import ConfigError
from kdlab.data.lm import LMData, encode_lm, eos_id
from kdlab.data.lm import encode as encode_module

TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}<|endoftext|>{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def rows(tokens) -> list[list[int]]:
    return [tokens.input_ids[i, : tokens.lengths[i]].tolist() for i in range(len(tokens))]


def test_documents_end_with_the_end_of_text_id_and_are_cut_into_pieces(small_bpe):
    docs = ["def add(a, b):\n    return a + b\n" * 3, "x = 1\n"]
    tokens = encode_lm(LMData("text", "t", documents=docs), small_bpe, max_length=8, cache=False)
    eos = eos_id(small_bpe)
    expected = []
    for doc in docs:
        stream = [*ids(small_bpe, doc), eos]
        expected += [stream[i : i + 8] for i in range(0, len(stream), 8) if len(stream[i : i + 8]) > 1]
    assert rows(tokens) == expected
    assert tokens.prompt_lengths.tolist() == [0] * len(expected)
    assert tokens.targets == sum(len(r) - 1 for r in expected)


def test_packing_joins_short_documents_into_whole_sequences(small_bpe):
    docs = ["a = 1\n", "b = 2\n", "c = 3\n", "d = 4\n"]
    tokens = encode_lm(LMData("text", "t", documents=docs), small_bpe, max_length=9, packing=True, cache=False)
    stream = [t for doc in docs for t in [*ids(small_bpe, doc), eos_id(small_bpe)]]
    joined = [t for row in rows(tokens) for t in row]
    assert joined == stream[: len(joined)]
    assert all(len(r) == 9 for r in rows(tokens)[:-1])
    unpacked = encode_lm(LMData("text", "t", documents=docs), small_bpe, max_length=9, cache=False)
    assert len(tokens) < len(unpacked)  # each short document would fill a sequence of its own


def test_padding_is_known_from_the_lengths_even_where_it_equals_the_end_of_text_id(small_bpe):
    assert small_bpe.pad_token_id == eos_id(small_bpe)
    tokens = encode_lm(LMData("text", "t", documents=["a = 1\n", "longer = 12345\n"]), small_bpe, max_length=32,
                       cache=False)  # fmt: skip
    short = int(tokens.lengths.argmin())
    assert tokens.input_ids[short, tokens.lengths[short] - 1] == eos_id(small_bpe)  # its own end-of-text token...
    assert (tokens.input_ids[short, tokens.lengths[short] :] == small_bpe.pad_token_id).all()  # ...then padding


def test_a_prompt_length_makes_each_sequence_begin_with_its_prompt(small_bpe):
    doc = "def add(a, b):\n    return a + b\n" * 4
    tokens = encode_lm(LMData("text", "t", documents=[doc]), small_bpe, max_length=10, prompt_length=4, cache=False)
    assert set(tokens.prompt_lengths.tolist()) == {4} and (tokens.lengths > 4).all()
    assert tokens.targets == int((tokens.lengths - 4).sum())


def test_prompt_completion_pairs_train_the_completion_and_count_what_is_cut(small_bpe):
    data = LMData("prompt_completion", "t", prompts=["def f():", "x" * 40, "y ="],
                  completions=[" return 1", "z", " 2" * 20])  # fmt: skip
    tokens = encode_lm(data, small_bpe, max_length=12, cache=False)
    first = ids(small_bpe, "def f():")
    assert rows(tokens)[0] == first + ids(small_bpe, " return 1") + [eos_id(small_bpe)]
    assert tokens.prompt_lengths[0] == len(first)
    assert tokens.dropped == 1  # the 40-character prompt fills the sequence: nothing left to train
    assert tokens.truncated == 2 and len(rows(tokens)[1]) == 12  # the long prompt's pair and the long completion


def test_chat_is_rendered_by_the_template_and_trains_the_assistant_turn(small_bpe):
    chat = [[{"role": "user", "content": "add"}, {"role": "assistant", "content": "a + b"}]]
    data = LMData("chat", "chat.jsonl", conversations=chat)
    with pytest.raises(ConfigError, match="chat template"):
        encode_lm(data, small_bpe, max_length=64, cache=False)
    small_bpe.chat_template = TEMPLATE
    try:
        tokens = encode_lm(data, small_bpe, max_length=64, cache=False)
    finally:
        small_bpe.chat_template = None
    prompt = ids(small_bpe, "<user>add<|endoftext|><assistant>")
    assert rows(tokens)[0] == prompt + ids(small_bpe, "a + b<|endoftext|>")
    assert tokens.prompt_lengths[0] == len(prompt)


def test_the_cache_returns_the_same_sequences_and_a_damaged_file_is_rebuilt(small_bpe, monkeypatch, tmp_path):
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path))
    data = LMData("text", "t", documents=["def add(a, b):\n    return a + b\n"] * 3)
    first = encode_lm(data, small_bpe, max_length=8)
    (file,) = (tmp_path / "tokens").glob("lm-*.pt")
    with monkeypatch.context() as m:
        m.setattr(encode_module, "_ids", lambda *a: pytest.fail("the cached sequences were encoded again"))
        again = encode_lm(data, small_bpe, max_length=8)
    assert torch.equal(first.input_ids, again.input_ids) and torch.equal(first.lengths, again.lengths)
    raw = bytearray(file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    file.write_bytes(bytes(raw))
    rebuilt = encode_lm(data, small_bpe, max_length=8)
    assert torch.equal(first.input_ids, rebuilt.input_ids)
    other = encode_lm(data, small_bpe, max_length=8, prompt_length=2)  # other options: another file
    assert len(list((tmp_path / "tokens").glob("lm-*.pt"))) == 2 and set(other.prompt_lengths.tolist()) == {2}


def test_the_stdlib_corpus_is_split_by_file_and_its_tokenizer_is_cached(corpus, bpe):
    sizes = {name: len(getattr(corpus, name)) for name in ("train", "val", "test")}
    assert all(sizes.values()) and sizes["train"] > sizes["val"] + sizes["test"]
    assert len(bpe) == 512 and bpe.eos_token == "<|endoftext|>"
    from kdlab.data.lm import stdlib

    assert stdlib(vocab_size=512).tokenizer.backend_tokenizer.to_str() == bpe.backend_tokenizer.to_str()
    text = corpus.val.documents[0][:500]
    assert bpe.decode(ids(bpe, text)) == text  # byte-level: every text round-trips
