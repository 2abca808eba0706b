import json

import pytest
import torch

from kdlab.core.errors import ConfigError
from kdlab.data.text.labels import TextData
from kdlab.data.text.readers import read_texts

ROWS = [("a fine day, at last", "positive"), ('she said "never"', "negative"), ("ok I guess", "neutral"),
        ("ünïcödé is fine too", "positive"), ("meh", "neutral")]  # fmt: skip


def write_csv(tmp_path, rows, header="text,label", name="data.csv", encoding="utf-8"):
    def quote(value):
        return '"' + str(value).replace('"', '""') + '"'

    lines = [header, *(",".join(quote(v) for v in row) for row in rows)]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding=encoding)
    return path


def write_jsonl(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in rows) + "\n\n", encoding="utf-8")
    return path


def same(first: TextData, second: TextData) -> None:
    assert first.texts == second.texts
    assert first.label_names == second.label_names
    assert torch.equal(first.labels, second.labels) and first.labels.dtype == torch.long


def test_every_source_gives_the_same_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    texts, labels = [t for t, _ in ROWS], [y for _, y in ROWS]
    reference = read_texts(ROWS)
    assert reference.label_names == ["negative", "neutral", "positive"]  # sorted
    assert reference.labels.tolist() == [2, 0, 1, 2, 1]
    assert reference.texts == texts
    for source in (write_csv(tmp_path, ROWS), str(write_jsonl(tmp_path, ROWS)), {"text": texts, "label": labels},
                   [{"text": t, "label": y} for t, y in ROWS],
                   datasets.Dataset.from_dict({"text": texts, "label": labels})):  # fmt: skip
        same(read_texts(source), reference)


def test_integer_labels_read_alike_from_csv_jsonl_and_tensors(tmp_path):
    rows = [(t, i % 3) for i, (t, _) in enumerate(ROWS)]
    reference = read_texts({"body": [t for t, _ in rows], "class": torch.tensor([y for _, y in rows])},
                           text="body", label="class")  # fmt: skip
    assert reference.label_names == ["0", "1", "2"] and reference.labels.tolist() == [0, 1, 2, 0, 1]
    same(read_texts(write_csv(tmp_path, rows)), reference)
    same(read_texts(write_jsonl(tmp_path, rows)), reference)


def test_given_label_names_fix_the_ids_and_a_class_label_column_gives_its_names():
    datasets = pytest.importorskip("datasets")
    data = read_texts(ROWS, label_names=["positive", "negative", "neutral"])
    assert data.labels.tolist() == [0, 1, 2, 0, 2]
    assert read_texts([("x", 1), ("y", 0)], label_names=["bad", "good"]).labels.tolist() == [1, 0]
    dataset = datasets.Dataset.from_dict({"text": ["x", "y"], "label": [1, 0]})
    dataset = dataset.cast_column("label", datasets.ClassLabel(names=["bad", "good"]))
    assert read_texts(dataset).label_names == ["bad", "good"]


def test_a_latin1_file_needs_its_encoding(tmp_path):
    path = write_csv(tmp_path, [("café olé", "positive"), ("non", "negative")], encoding="latin-1")
    with pytest.raises(ConfigError, match=r"line 2: the file is not utf-8.*encoding='latin-1'"):
        read_texts(path)
    assert read_texts(path, encoding="latin-1").texts[0] == "café olé"


@pytest.mark.parametrize("kind", ["csv", "mapping"])
def test_a_missing_column_names_the_columns_that_exist(tmp_path, kind):
    rows = [("good", "positive"), ("bad", "negative")]
    source = write_csv(tmp_path, rows, header="sentence,label") if kind == "csv" else {
        "sentence": ["good", "bad"], "label": ["positive", "negative"]}  # fmt: skip
    with pytest.raises(ConfigError, match=r"no text column 'text'.*'sentence', 'label'.*text=") as caught:
        read_texts(source)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"no label column 'sentiment'.*Did you mean.*'sentence', 'label'"):
        read_texts(source, text="sentence", label="sentiment")


def test_blank_texts_are_counted_with_their_first_lines(tmp_path):
    rows = [("fine", "a"), ("", "b"), ("ok", "a"), ("   ", "b"), *([("", "a")] * 6)]
    with pytest.raises(ConfigError, match=r"8 of 10 text\(s\) are empty or blank \(lines 3, 5, 6, 7 and 8 and 3 more"):
        read_texts(write_csv(tmp_path, rows))
    with pytest.raises(ConfigError, match=r"1 of 2 text\(s\) are empty or blank \(row 2\)"):
        read_texts([("fine", "a"), ("\t", "b")])


def test_texts_that_are_not_strings_are_named(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "ok", "label": 0}\n{"text": 5, "label": 1}\n{"label": 1}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"2 text\(s\) are not strings but NoneType, int \(lines 2 and 3"):
        read_texts(path)


def test_unknown_labels_are_named_with_the_valid_classes(tmp_path):
    unknown = r"1 label\(s\) are not among the 2 classes: 'postive' \(row 3\)\. Did you mean 'positive'.*Valid labels"
    with pytest.raises(ConfigError, match=unknown + r": the names 'negative', 'positive'"):
        read_texts([("a", "positive"), ("b", "negative"), ("c", "postive")], label_names=["negative", "positive"])
    with pytest.raises(ConfigError, match=r"not among the 2 classes: 3, -1 .*ids 0 to 1"):
        read_texts([("a", 3), ("b", 0), ("c", -1)], label_names=["no", "yes"])
    with pytest.raises(ConfigError, match=r"neither class names .* nor class ids.*None.*row 2"):
        read_texts([("a", "x"), ("b", None)])
    with pytest.raises(ConfigError, match=r"mix class names \(such as 'x'\) and class ids \(such as 1\)"):
        read_texts([("a", "x"), ("b", 1)])


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("text,label\n", "data.csv", "holds no examples"),
        ("", "data.csv", "is empty: a CSV file of texts needs a header row"),
        ("text,label\nhello,a,b\n", "data.csv", r"line 2: 3 fields, but the header has 2.*Quote texts"),
        ('{"text": "a", "label": 0}\n{"text": \n', "data.jsonl", r"line 2: not JSON"),
        ('["a", 0]\n', "data.jsonl", r"line 1: a JSON list, but each line"),
        ("text,label\na,b\n", "data.txt", r"Cannot tell the format.*'\.txt'.*format='csv'"),
    ],
)
def test_malformed_files_are_one_clear_error(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        read_texts(path)


def test_other_bad_sources_are_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="The list of pairs holds no examples"):
        read_texts([])
    with pytest.raises(ConfigError, match=r"Row 2 of the list of pairs is 'oops', not a \(text, label\) pair"):
        read_texts([("a", 0), "oops"])
    with pytest.raises(ConfigError, match=r"different lengths \('text': 2, 'label': 1\)"):
        read_texts({"text": ["a", "b"], "label": [0]})
    with pytest.raises(ConfigError, match="Cannot read the text file"):
        read_texts(tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="Unknown text file format 'tsv'"):
        read_texts(tmp_path / "x.csv", format="tsv")
    with pytest.raises(ConfigError, match="Unknown text encoding 'klingon'"):
        read_texts(write_csv(tmp_path, ROWS), encoding="klingon")
    with pytest.raises(ConfigError, match="names a class twice: 'a'"):
        read_texts(ROWS, label_names=["a", "b", "a"])
    with pytest.raises(ConfigError, match="Cannot read text-classification data from a int"):
        read_texts(5)


def test_a_dataset_dict_asks_for_one_split():
    datasets = pytest.importorskip("datasets")
    both = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a"], "label": [0]})})
    with pytest.raises(ConfigError, match=r"DatasetDict of the splits 'train': give one split"):
        read_texts(both)
