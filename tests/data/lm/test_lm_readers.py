"""Every source of language-model data reads into the same examples; every malformed one is one clear error."""

import json

import pytest

from kdlab.core.errors import ConfigError
from kdlab.data.lm import Columns, read_lm


def test_a_folder_a_text_file_and_a_list_of_strings_are_documents(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.txt").write_text("second")
    (tmp_path / "docs" / "a.py").write_text("first")
    (tmp_path / "docs" / ".hidden").write_text("never")
    folder = read_lm(tmp_path / "docs")
    assert folder.kind == "text" and folder.documents == ["first", "second"]
    assert read_lm(tmp_path / "docs" / "a.py").documents == ["first"]
    assert read_lm(["x", "y"]).documents == ["x", "y"]


def test_jsonl_records_give_their_kind_and_renamed_columns_work(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps({"q": f"p{i}", "a": f"c{i}"}) for i in range(3)))
    data = read_lm(path, Columns(prompt="q", completion="a"))
    assert data.kind == "prompt_completion" and data.prompts == ["p0", "p1", "p2"] and data.completions[2] == "c2"
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "hello"}]}))  # fmt: skip
    assert read_lm(chat).kind == "chat" and read_lm(chat).conversations[0][1]["content"] == "hello"
    assert read_lm(tmp_path / "pairs.jsonl", Columns(text="q")).documents == ["p0", "p1", "p2"]


def test_a_dataset_pairs_records_and_columns_read_alike():
    datasets = pytest.importorskip("datasets")
    rows = [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}]
    expected = (["a", "c"], ["b", "d"])
    for source in (datasets.Dataset.from_list(rows), rows, [("a", "b"), ("c", "d")],
                   {"prompt": ["a", "c"], "completion": ["b", "d"]}):  # fmt: skip
        data = read_lm(source)
        assert data.kind == "prompt_completion" and (data.prompts, data.completions) == expected, source
    assert read_lm(datasets.Dataset.from_dict({"text": ["t"]})).documents == ["t"]


def test_subset_keeps_the_kind_and_order():
    data = read_lm(["a", "b", "c"]).subset([2, 0])
    assert data.documents == ["c", "a"] and len(data) == 2


@pytest.mark.parametrize(
    ("source", "needles"),
    [
        ([{"body": "x"}], ["'body'", "'text'", "data.text="]),
        ([{"prompt": 1, "completion": "x"}], ["example 1", "'prompt'", "int"]),
        ([{"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]}],
         ["last message", "'user'", "assistant"]),
        ([{"messages": "hello"}], ["non-empty list", "role"]),
        ("/nowhere/at/all", ["neither a file nor a folder"]),
    ],
)
def test_malformed_sources_are_one_clear_error(source, needles):
    with pytest.raises(ConfigError) as error:
        read_lm(source)
    for needle in needles:
        assert needle in str(error.value)


def test_a_file_in_another_encoding_is_named(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("café".encode("latin-1"))
    with pytest.raises(ConfigError, match="not utf-8 text"):
        read_lm(path)
    assert read_lm(path, encoding="latin-1").documents == ["café"]
