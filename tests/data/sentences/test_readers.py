from collections import Counter
from pathlib import Path

import pytest

from kdlab.core.errors import ConfigError, DataError
from kdlab.data.sentences.readers import (
    Sentence,
    hironsan_file,
    hironsan_split,
    read_columns,
    read_conllu,
    split_by_index,
    turkish_treebank_files,
)

CONLLU = (
    "# sent_id = 1\n"
    "# text = Vámonos al mar.\n"
    "1-2\tVámonos\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "1\tVamos\tir\tVERB\t_\t_\t0\troot\t_\t_\n"
    "2\tnos\tnosotros\tPRON\t_\t_\t1\tobj\t_\t_\n"
    "3-4\tal\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "3\ta\ta\tADP\t_\t_\t5\tcase\t_\t_\n"
    "4\tel\tel\tDET\t_\t_\t5\tdet\t_\t_\n"
    "5\tmar\tmar\tNOUN\t_\t_\t1\tobl\t_\t_\n"
    "5.1\tfue\tir\tVERB\t_\t_\t_\t_\t1:conj\t_\n"
    "6\t.\t.\tPUNCT\t_\t_\t1\tpunct\t_\t_\n"
    "\n"
    "# sent_id = 2\n"
    "1\tHola\thola\tINTJ\t_\t_\t0\troot\t_\t_"  # the last sentence has no trailing blank line
)
GOOD_LINE = "1\tHola\thola\tINTJ\t_\t_\t0\troot\t_\t_"


def write(tmp_path: Path, text: str, name: str = "data.conllu") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_conllu_reads_words_tags_and_trees_and_skips_multiword_tokens(tmp_path):
    first, second = read_conllu(write(tmp_path, CONLLU))
    assert first == Sentence(
        words=["Vamos", "nos", "a", "el", "mar", "."],
        tags=["VERB", "PRON", "ADP", "DET", "NOUN", "PUNCT"],
        heads=[0, 1, 5, 5, 1, 1],
        relations=["root", "obj", "case", "det", "obl", "punct"],
    )
    assert second == Sentence(["Hola"], ["INTJ"], [0], ["root"])


def test_read_conllu_accepts_crlf_and_several_blank_lines(tmp_path):
    text = "\r\n\r\n" + CONLLU.replace("\n", "\r\n") + "\r\n\r\n\r\n"
    assert [len(s.words) for s in read_conllu(write(tmp_path, text))] == [6, 1]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("# c\n" + GOOD_LINE + "\n\n1\tBurda\tbur\tPRON\t_\t_\t0\n", 4, "expected 10 tab-separated columns"),
        (GOOD_LINE + "\n3\tx\tx\tNOUN\t_\t_\t1\tnn\t_\t_\n", 2, "word ID '3' should be 2"),
        (GOOD_LINE + "\n2-x\tx\tx\tNOUN\t_\t_\t1\tnn\t_\t_\n", 2, "word ID '2-x' should be 2"),
        (GOOD_LINE + "\n2\tx\tx\tNOUN\t_\t_\tone\tnn\t_\t_\n", 2, "HEAD 'one' is not an integer"),
        (GOOD_LINE + "\n2\tx\tx\tNOUN\t_\t_\t2\tnn\t_\t_\n", 2, "word 2 has itself as HEAD"),
        (GOOD_LINE + "\n2\tx\tx\tNOUN\t_\t_\t3\tnn\t_\t_\n3\ty\ty\tX\t_\t_\t9\tnn\t_\t_\n\n", 3, "HEAD 9 of word 3"),
        (GOOD_LINE + "\n2\tx\tx\tNOUN\t_\t_\t-1\tnn\t_\t_\n", 2, "HEAD -1 of word 2 is outside"),
        ("\n\n" + GOOD_LINE + "\n2\tx\tx\t_\t_\t_\t1\tnn\t_\t_\n", 4, "UPOS (column 4) is '_'"),
        (GOOD_LINE + "\n2\tx\tx\tNOUN\t_\t_\t1\t\t_\t_\n", 2, "DEPREL (column 8) is ''"),
    ],
)
def test_read_conllu_names_the_file_and_line_of_each_problem(tmp_path, text, line, message):
    path = write(tmp_path, text, "broken.conllu")
    with pytest.raises(DataError) as caught:
        read_conllu(path)
    assert str(caught.value).startswith(f"{path}, line {line}:") and message in str(caught.value)


def test_read_conllu_rejects_empty_unreadable_and_non_utf8_files(tmp_path):
    with pytest.raises(DataError, match="contains no sentences"):
        read_conllu(write(tmp_path, "# only a comment\n\n"))
    with pytest.raises(DataError, match="Cannot read"):
        read_conllu(tmp_path / "missing.conllu")
    path = tmp_path / "latin1.conllu"
    path.write_bytes((GOOD_LINE + "\n2\tcaf\xe9\tx\tNOUN\t_\t_\t1\tnn\t_\t_\n").encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.conllu, line 2: the file is not UTF-8"):
        read_conllu(path)


COLUMNS = (
    "-DOCSTART- -X- -X- O\n"
    "\n"
    "EU NNP B-NP B-ORG\n"
    "rejects VBZ B-VP O\n"
    "German JJ B-NP B-MISC\n"
    "\n"
    "Peter NNP B-NP B-PER\n"
    "Blackburn NNP I-NP I-PER\n"
    "\n"
    "-DOCSTART- -X- -X- O\n"
    "\n"
    "BRUSSELS NNP B-NP S-LOC\n"
)


def test_read_columns_skips_docstart_and_reads_tokens_and_tags(tmp_path):
    sentences = read_columns(write(tmp_path, COLUMNS, "eng.train"))
    assert [s.words for s in sentences] == [["EU", "rejects", "German"], ["Peter", "Blackburn"], ["BRUSSELS"]]
    assert [s.tags for s in sentences] == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"], ["S-LOC"]]
    assert all(s.heads is None and s.relations is None for s in sentences)
    chunks = read_columns(write(tmp_path, COLUMNS, "eng.train"), tag_column=2)
    assert chunks[0].tags == ["B-NP", "B-VP", "B-NP"]


def test_read_columns_rejects_a_bad_tag_naming_it_and_its_line(tmp_path):
    path = write(tmp_path, "Peter B-PER\nBlackburn X-PER\n", "bad.txt")
    with pytest.raises(DataError, match=r"bad.txt, line 2: tag 'X-PER' is not a chunk tag"):
        read_columns(path)
    with pytest.raises(DataError, match="line 1: tag 'B-'"):
        read_columns(write(tmp_path, "Peter B-\n"))


def test_read_columns_with_a_fixed_tag_column_needs_a_constant_column_count(tmp_path):
    path = write(tmp_path, "EU NNP B-ORG\nrejects VBZ O\n\nPeter B-PER\n", "ragged.txt")
    with pytest.raises(DataError, match=r"ragged.txt, line 4: expected 3 columns like the first token line, found 2"):
        read_columns(path, tag_column=2)
    # with the default tag_column=-1 the tag is the last column and the count may vary
    assert [s.tags for s in read_columns(path)] == [["B-ORG", "O"], ["B-PER"]]
    with pytest.raises(DataError, match="line 2: found 1 column"):
        read_columns(write(tmp_path, "EU B-ORG\nrejects\n"))


def test_read_columns_with_a_tab_separator_keeps_spaces_inside_tokens(tmp_path):
    path = write(tmp_path, "New York\tNNP\tB-LOC\n\u3000\tSYM\tSP\tX\tO\n")
    (sentence,) = read_columns(path, separator="\t")
    assert sentence.words == ["New York", "\u3000"] and sentence.tags == ["B-LOC", "O"]


def test_splits_by_index_and_by_the_hironsan_rule():
    sentences = [Sentence([str(i)], ["O"]) for i in range(25)]
    parts = {part: [int(s.words[0]) for s in split_by_index(sentences, part)] for part in ("train", "dev", "test")}
    assert parts["dev"] == [8, 18] and parts["test"] == [9, 19]
    assert sorted(parts["train"] + parts["dev"] + parts["test"]) == list(range(25))
    assert len(hironsan_split(sentences, "train")) == 22 and len(hironsan_split(sentences, "test")) == 3
    with pytest.raises(ConfigError, match="Valid splits: dev, test, train"):
        split_by_index(sentences, "valid")


def test_the_real_turkish_treebank_counts():
    try:
        files = turkish_treebank_files()
    except DataError:
        pytest.skip("The Turkish Web Treebank is not installed: pip install --no-deps turkish-treebanks")
    sentences = [sentence for file in files for sentence in read_conllu(file)]
    assert len(sentences) == 4851
    assert sum(len(s.words) for s in sentences) == 81370
    assert max(len(s.words) for s in sentences) == 88
    assert len({tag for s in sentences for tag in s.tags}) == 14
    assert len({relation for s in sentences for relation in s.relations}) == 44  # 43 labels + root
    assert all(s.heads.count(0) == 1 for s in sentences)
    assert [len(split_by_index(sentences, part)) for part in ("train", "dev", "test")] == [3881, 485, 485]


def test_the_real_hironsan_corpus_counts():
    try:
        file = hironsan_file()
    except DataError:
        pytest.skip("The Hironsan corpus is not installed: pip install hironsancorpus")
    sentences = read_columns(file, separator="\t")
    assert len(sentences) == 500
    assert sum(len(s.words) for s in sentences) == 15520
    assert max(len(s.words) for s in sentences) == 102
    types = Counter(tag[2:] for s in sentences for tag in s.tags if tag != "O")
    assert sorted(types) == ["ART", "DAT", "LOC", "MON", "ORG", "PER", "PSN", "TIM"]
    assert [len(hironsan_split(sentences, part)) for part in ("train", "test")] == [450, 50]


def test_locators_say_how_to_install_a_missing_corpus(tmp_path, monkeypatch):
    import importlib.metadata
    import importlib.util
    import site

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(tmp_path)])
    monkeypatch.setattr(site, "getusersitepackages", lambda: str(tmp_path))
    with pytest.raises(DataError, match="pip install --no-deps turkish-treebanks"):
        turkish_treebank_files()
    (tmp_path / "data").mkdir()
    for name in ("web.conllu", "wiki.conllu"):
        (tmp_path / "data" / name).write_text(GOOD_LINE + "\n", encoding="utf-8")
    assert turkish_treebank_files() == [tmp_path / "data" / "web.conllu", tmp_path / "data" / "wiki.conllu"]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install hironsancorpus"):
        hironsan_file()
