import sys
from types import SimpleNamespace

import pytest
import torch

from kdlab.core.errors import ConfigError
from kdlab.data.text import tokens as tokens_module
from kdlab.data.text.tokens import Tokens, same_tokenizer, token_cache_dir, tokenize


def rows(tokens: Tokens) -> list[list[int]]:
    return [tokens.input_ids[i, :n].tolist() for i, n in enumerate(tokens.lengths.tolist())]


def same(first: Tokens, second: Tokens) -> None:
    assert torch.equal(first.input_ids, second.input_ids) and torch.equal(first.lengths, second.lengths)
    assert (first.pad_id, first.truncated, first.max_length) == (second.pad_id, second.truncated, second.max_length)
    assert first.input_ids.dtype == second.input_ids.dtype == torch.long


def test_tokens_are_the_tokenizers_own_ids_padded(wordpiece, texts, tmp_path):
    tokens = tokenize(texts, wordpiece, cache_dir=tmp_path)
    assert rows(tokens) == wordpiece(texts)["input_ids"]
    assert tokens.input_ids.shape == (len(texts), int(tokens.lengths.max()))
    beyond = torch.arange(tokens.input_ids.shape[1])[None, :] >= tokens.lengths[:, None]
    assert (tokens.input_ids[beyond] == wordpiece.pad_token_id).all()
    assert tokens.pad_id == 0 and tokens.max_length == 512 and tokens.truncated == 0
    assert tokens.token_type_ids is None  # all zeros for single sentences


def test_a_bare_tokenizer_and_its_transformers_wrapper_agree(byte_bpe, texts, tmp_path):
    transformers = pytest.importorskip("transformers")
    wrapped = transformers.PreTrainedTokenizerFast(tokenizer_object=byte_bpe, pad_token="<pad>")
    bare = tokenize(texts, byte_bpe, cache=False)
    assert rows(bare) == [encoding.ids for encoding in byte_bpe.encode_batch(texts)]
    assert bare.pad_id == byte_bpe.token_to_id("<pad>") and bare.max_length == 512
    same(tokenize(texts, wrapped, max_length=512, cache=False), bare)
    assert byte_bpe.truncation is None  # the caller's tokenizer is left as it was


def test_the_cache_returns_the_same_tensors_without_tokenising(wordpiece, texts, tmp_path, monkeypatch):
    first = tokenize(texts, wordpiece, max_length=20, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    monkeypatch.setattr(tokens_module, "_encode", lambda *args: pytest.fail("tokenised again"))
    same(tokenize(texts, wordpiece, max_length=20, cache_dir=tmp_path), first)


def test_the_key_covers_the_texts_the_length_and_the_tokenizer(wordpiece, byte_bpe, texts, tmp_path):
    tokenize(texts, wordpiece, max_length=20, cache_dir=tmp_path)
    tokenize(texts, wordpiece, max_length=21, cache_dir=tmp_path)
    tokenize(texts[:-1], wordpiece, max_length=20, cache_dir=tmp_path)
    tokenize(texts, byte_bpe, max_length=20, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 4


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_a_damaged_cache_file_is_rebuilt(wordpiece, texts, tmp_path, damage):
    first = tokenize(texts, wordpiece, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.pt")
    data = path.read_bytes()
    broken = {"truncate": data[: len(data) // 2], "flip": data[:100] + bytes([data[100] ^ 1]) + data[101:],
              "garbage": b"not a cache file at all" * 10, "empty": b""}[damage]  # fmt: skip
    path.write_bytes(broken)
    same(tokenize(texts, wordpiece, cache_dir=tmp_path), first)
    assert path.read_bytes() == data  # written anew


def test_truncation_keeps_the_special_tokens_and_counts_the_cut_texts(wordpiece, texts):
    full = wordpiece(texts)["input_ids"]
    tokens = tokenize(texts, wordpiece, max_length=8, cache=False)
    long = [i for i, ids in enumerate(full) if len(ids) > 8]
    assert 0 < len(long) < len(texts) and tokens.truncated == len(long)
    assert tokens.input_ids.shape[1] == 8 and tokens.max_length == 8
    for i in long:
        assert tokens.input_ids[i].tolist() == [*full[i][:7], wordpiece.sep_token_id]
    with pytest.raises(ConfigError, match="max_length must be an integer above 2"):
        tokenize(texts, wordpiece, max_length=2)


def test_a_tokenizer_without_a_real_limit_gets_512(wordpiece, texts):
    unlimited = SimpleNamespace(backend_tokenizer=wordpiece.backend_tokenizer, model_max_length=int(1e30),
                                pad_token_id=0)  # fmt: skip
    assert tokenize(texts[:3], unlimited, cache=False).max_length == 512
    tokenizers = pytest.importorskip("tokenizers")
    bare = tokenizers.Tokenizer.from_str(wordpiece.backend_tokenizer.to_str())
    bare.enable_truncation(100)
    assert tokenize(texts[:3], bare, cache=False).max_length == 100  # a bare tokenizer's own truncation
    assert bare.truncation["max_length"] == 100


def test_bad_tokenizers_texts_and_a_missing_extra_are_clear_errors(wordpiece, monkeypatch):
    with pytest.raises(ConfigError, match="Cannot tokenise with a str: give a fast Hugging Face tokenizer"):
        tokenize(["a"], "bert-base-uncased")
    with pytest.raises(ConfigError, match="text 1 is a int"):
        tokenize(["a", 3], wordpiece)
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"need the optional extra: pip install 'kdlab\[text\]'"):
        tokenize(["a"], wordpiece)


def test_no_texts_give_empty_tokens(wordpiece):
    tokens = tokenize([], wordpiece, cache=False)
    assert tokens.input_ids.shape == (0, 0) and len(tokens) == 0


def test_same_tokenizer(wordpiece, byte_bpe):
    transformers = pytest.importorskip("transformers")
    again = transformers.AutoTokenizer.from_pretrained(wordpiece.name_or_path)
    assert same_tokenizer(wordpiece, again) and same_tokenizer(byte_bpe, byte_bpe)
    assert not same_tokenizer(wordpiece, byte_bpe) and not same_tokenizer(None, wordpiece)


def test_the_cache_folder_follows_kdlab_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path))
    assert token_cache_dir() == tmp_path / "tokens" and token_cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("KDLAB_CACHE")
    assert token_cache_dir().parts[-3:] == (".cache", "kdlab", "tokens")
