"""Sequence runs end to end on tiny real data: train a teacher, distil with every structured method, errors."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdlab.core.errors import ConfigError
from kdlab.data.sentences.encoding import Vocabulary, encode
from kdlab.data.sentences.labels import LabelTable
from kdlab.data.sentences.loader import SentenceLoader
from kdlab.data.sentences.readers import Sentence
from kdlab.methods import METHODS, MethodContext, build_method, method_params
from kdlab.methods.structured import SequenceContext
from kdlab.models.factory import ModelSpec
from kdlab.models.sequence import chain_of
from kdlab.ops.crf import Chain
from kdlab.tasks.structured.labels import sentence_label_loss
from kdlab.tasks.structured.models import build_sequence_model, label_order

turkish = pytest.importorskip("kdlab.data.sentences.readers").turkish_treebank_files


def _have_turkish() -> bool:
    try:
        turkish()
    except Exception:
        return False
    return True


needs_treebank = pytest.mark.skipif(not _have_turkish(), reason="pip install --no-deps turkish-treebanks")

SENTENCES = [
    Sentence(["a", "b", "c"], ["X", "Y", "X"], [2, 0, 2], ["n", "root", "n"]),
    Sentence(["b", "a"], ["Y", "X"], [0, 1], ["root", "m"]),
    Sentence(["c", "c", "a", "b"], ["X", "X", "Y", "Y"], [2, 0, 2, 3], ["n", "root", "m", "n"]),
]


def _batch(task):
    vocab = Vocabulary.build(SENTENCES, task, min_count=1)
    data = encode(SENTENCES, vocab, task, labelled=[True, False, True])
    return vocab, next(SentenceLoader(data, 3).epoch(0))


SEQUENCE_METHODS = METHODS.names("sequence_labelling")


def sequence_method(name, options, task, student_kind, teacher_kind, table=None):
    """A registered method built as a sequence job builds it: typed options, the task's label loss."""
    context = MethodContext(
        torch.nn.Identity(), None, 3, label_loss=sentence_label_loss(student_kind, table), label_smoothing=False,
        extras=SequenceContext(task, student_kind, teacher_kind, table),
    )  # fmt: skip
    return build_method(name, method_params(name, options), context)


@pytest.mark.parametrize("name", SEQUENCE_METHODS)
@pytest.mark.parametrize("teacher_head,student_head", [("crf", "crf"), ("crf", "maxent"), ("maxent", "crf")])
def test_every_tagging_method_takes_a_finite_step(name, teacher_head, student_head):
    torch.manual_seed(0)
    vocab, batch = _batch("tagging")
    student = build_sequence_model(ModelSpec("tagger", {"head": student_head, "hidden": 8}), vocab, "tagging", None)
    teacher = build_sequence_model(ModelSpec("tagger", {"head": teacher_head, "hidden": 8}), vocab, "tagging", None)
    needs = METHODS.get(name).needs_teacher
    method = sequence_method(name, {}, "tagging", student_head, teacher_head if needs else "none")
    if hasattr(method, "start_epoch"):
        method.start_epoch(1, 3)
    terms = method(student(batch.x), teacher(batch.x) if needs else None, batch)
    loss = sum(terms.values())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in student.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


@pytest.mark.parametrize(
    "options",
    [
        {"name": "ce"},
        {"name": "top_k_kd", "k": 1},
        {"name": "structural_kd"},
        {"name": "structural_kd", "arc_marginals": "matrix_tree"},
    ],
)
def test_parser_to_labeler_methods_take_a_finite_step(options):
    torch.manual_seed(0)
    vocab, batch = _batch("parsing")
    table = LabelTable.build(SENTENCES, vocab.relations)
    student = build_sequence_model(ModelSpec("tagger", {"head": "maxent", "hidden": 8}), vocab, "parsing", table)
    teacher = build_sequence_model(ModelSpec("biaffine", {"hidden": 8, "layers": 1}), vocab, "parsing", None)
    name = options["name"]
    needs = METHODS.get(name).needs_teacher
    values = {k: v for k, v in options.items() if k != "name"}
    method = sequence_method(name, values, "parsing", "labeler", "parser" if needs else "none", table)
    loss = sum(method(student(batch.x), teacher(batch.x), batch).values())
    loss.backward()
    assert torch.isfinite(loss) and getattr(method, "case", "none") in ("1b", "none")


def test_label_table_round_trips_gold_trees():
    vocab, batch = _batch("parsing")
    table = LabelTable.build(SENTENCES, vocab.relations)
    labels = table.labels_of((batch.y[..., 0], batch.y[..., 1]))
    known = batch.y[..., 0] >= 0
    assert torch.all(labels[known] >= 0)
    logits = torch.nn.functional.one_hot(labels.clamp_min(0), len(table)).float()
    heads, rels = table.decode(logits, batch.extras.mask)
    assert torch.equal(heads[known], batch.y[..., 0][known]) and torch.equal(rels[known], batch.y[..., 1][known])


def test_teacher_annealing_goes_from_pure_distillation_to_the_floor():
    method = sequence_method("token_kd", {"anneal_factor": 0.5}, "tagging", "crf", "crf")
    weights = []
    for epoch in range(5):
        method.start_epoch(epoch, 5)
        weights.append(method.weight)
    assert weights == pytest.approx([1.0, 0.875, 0.75, 0.625, 0.5])
    fixed = sequence_method("token_kd", {"teacher_annealing": False, "ce_weight": 0.7}, "tagging", "crf", "crf")
    fixed.start_epoch(3, 5)
    assert fixed.weight == pytest.approx(0.3)
    with pytest.raises(ConfigError, match=r"method.interpolation is now called method.ce_weight.*1 − λ"):
        method_params("token_kd", {"interpolation": 0.3})


def test_case_temperatures_follow_the_official_configs():
    make = lambda t, s: sequence_method("structural_kd", {}, "tagging", s, t)  # noqa: E731
    assert (make("crf", "crf").temperature, make("crf", "maxent").temperature, make("maxent", "crf").temperature) == (
        3.0,
        5.0,
        1.0,
    )
    with pytest.raises(ConfigError, match="not defined"):
        sequence_method("structural_kd", {}, "parsing", "parser", "labeler")


def test_tag_sets_must_match_unless_renamed():
    assert label_order(("B", "A", "C"), ("A", "B", "C"), {}, "tag") == [1, 0, 2]
    with pytest.raises(ConfigError, match="only the teacher has B-PERSON; only the student's data has B-PER"):
        label_order(("O", "B-PERSON"), ("O", "B-PER"), {}, "tag")
    assert label_order(("O", "B-PERSON"), ("B-PER", "O"), {"B-PERSON": "B-PER"}, "tag") == [1, 0]
    with pytest.raises(ConfigError, match="one-to-one"):
        label_order(("O", "B-PERSON", "B-PER"), ("B-PER", "O"), {"B-PERSON": "B-PER"}, "tag")


def test_loader_resumes_mid_epoch_with_the_same_batches():
    vocab = Vocabulary.build(SENTENCES * 5, "tagging", min_count=1)
    loader = SentenceLoader(encode(SENTENCES * 5, vocab, "tagging"), 4, shuffle=True, seed=3)
    full = list(loader.epoch(2))
    tail = list(loader.epoch(2, start=2))
    assert all(torch.equal(a.x, b.x) and torch.equal(a.index, b.index) for a, b in zip(full[2:], tail, strict=True))
    assert all(
        torch.equal(b.extras.mask, b.x[..., 0] > 0) and b.x.shape[1] == int(b.extras.mask.sum(1).max()) for b in full
    )


def _kdlab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdlab.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_malformed_conllu_is_one_paragraph_naming_file_and_line(tmp_path):
    bad = tmp_path / "bad.conllu"
    bad.write_text("1\tKedi\tkedi\tNOUN\t_\t_\t0\troot\t_\t_\n2\tuyur\n\n", encoding="utf-8")
    out = _kdlab("train", "data.name=conllu", f"data.train={bad}", "student.name=tagger", "device=cpu", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "bad.conllu, line 2" in out.stderr and "10" in out.stderr


@needs_treebank
def test_train_then_distill_writes_task_and_fidelity_figures(tmp_path):
    from kdlab.pipeline.config import resolve
    from kdlab.pipeline.dispatch import run
    from kdlab.tasks.structured.models import load_sequence_model

    base = {
        "data": {"name": "turkish_pos", "train_size": 40, "batch_size": 8},
        "epochs": 1,
        "device": "cpu",
        "runs_dir": str(tmp_path),
        "optim": {"name": "adamw", "lr": 0.003},
    }
    teacher = run(
        resolve({**base, "name": "t", "student": {"name": "tagger", "hidden": 8}, "method": {"name": "ce"}}),
        "train",
        progress=False,
    )
    summary = teacher.summaries["main"][0]
    assert set(summary["student"]["test"]) == {"accuracy"} and summary["task"] == "tagging"
    loaded = load_sequence_model(teacher.folder / "model.pt")
    assert len(loaded.vocab.tags) == 14  # the whole training split's tag set, not the 40 sentences'
    config = {
        **base,
        "name": "s",
        "teacher": [str(teacher.folder)],
        "data": {**base["data"], "train_size": 20, "labelled": 10},  # a smaller vocabulary than the teacher's
        "student": {"name": "tagger", "head": "maxent", "hidden": 4},
        "method": {"name": "structural_kd"},
    }
    distilled = run(resolve(config), "distill", progress=False).summaries["main"][0]
    test = distilled["student"]["test"]
    assert {"accuracy", "agreement", "sentence_agreement", "kl"} <= set(test)
    assert distilled["method"]["case"] == "2a" and distilled["labelled"] == 10 and distilled["train_sentences"] == 20
    assert 0.0 <= test["agreement"] <= 1.0 and test["kl"] >= 0.0
    # the teacher reads the student's data in its own vocabulary: it scores as in its own run
    assert distilled["teacher"]["test"]["accuracy"] == summary["student"]["test"]["accuracy"]


def test_crf_chain_of_tagger_uses_the_model_transitions():
    vocab, batch = _batch("tagging")
    model = build_sequence_model(ModelSpec("tagger", {"head": "crf", "hidden": 4}), vocab, "tagging", None)
    out = model(batch.x)
    chain = chain_of(out, batch.extras.mask)
    assert isinstance(chain, Chain) and chain.transitions.data_ptr() == model.transitions.data_ptr()


def _columns(path: Path, person: str) -> Path:
    rows = [
        [("-DOCSTART-", "O")],
        [("Ali", f"B-{person}"), ("Veli", f"I-{person}"), ("geldi", "O")],
        [("Ayşe", f"B-{person}"), ("gitti", "O")],
        [("bugün", "O"), ("Ali", f"B-{person}"), ("geldi", "O")],
    ]
    path.write_text("\n\n".join("\n".join(f"{w} X {t}" for w, t in s) for s in rows) + "\n", encoding="utf-8")
    return path


def test_conll2003_files_train_and_a_teacher_with_other_tag_names_needs_a_tag_map(tmp_path):
    from kdlab.pipeline.config import resolve
    from kdlab.pipeline.dispatch import run

    ours, theirs = _columns(tmp_path / "per.txt", "PER"), _columns(tmp_path / "person.txt", "PERSON")
    base = {
        "epochs": 1,
        "device": "cpu",
        "runs_dir": str(tmp_path / "runs"),
        "student": {"name": "tagger", "hidden": 4},
    }
    teacher = run(
        resolve({**base, "name": "t", "data": {"name": "conll2003", "train": str(theirs), "test": str(theirs)},
                 "method": {"name": "ce"}}), "train", progress=False,
    )  # fmt: skip
    assert set(teacher.summaries["main"][0]["student"]["test"]) == {"accuracy", "precision", "recall", "f1"}
    student = {**base, "data": {"name": "conll2003", "train": str(ours), "test": str(ours)},
               "teacher": [str(teacher.folder)], "method": {"name": "structural_kd"}}  # fmt: skip
    with pytest.raises(ConfigError, match="only the teacher has B-PERSON, I-PERSON; only the student's data has B-PER"):
        run(resolve({**student, "name": "s"}), "distill", progress=False)
    renamed = {**student, "name": "s2", "tag_map": {"B-PERSON": "B-PER", "I-PERSON": "I-PER"}}
    summary = run(resolve(renamed), "distill", progress=False).summaries["main"][0]
    assert summary["method"]["case"] == "1a" and 0.0 <= summary["student"]["test"]["agreement"] <= 1.0


@pytest.mark.parametrize("spec", [{"name": "tagger", "encoder": "transformer", "hidden": 16, "head": "crf"},
                                  {"name": "biaffine", "encoder": "transformer", "hidden": 16}])  # fmt: skip
def test_transformer_encoder_ignores_padding(spec):
    """Appending a padded position to a batch leaves every real position's scores unchanged."""
    torch.manual_seed(0)
    task = "tagging" if spec["name"] == "tagger" else "parsing"
    vocab, batch = _batch(task)
    model = build_sequence_model(
        ModelSpec(spec["name"], {k: v for k, v in spec.items() if k != "name"}), vocab, task, None
    )
    model.eval()
    with torch.no_grad():
        out = model(batch.x).logits
        longer = model(torch.nn.functional.pad(batch.x, (0, 0, 0, 1))).logits
    n = batch.x.shape[1]
    real = batch.extras.mask
    if task == "tagging":
        assert torch.allclose(out[real], longer[:, :n][real], atol=1e-5)
    else:
        assert torch.allclose(out[real][:, : n + 1], longer[:, :n][real][:, : n + 1], atol=1e-4)


def test_compare_on_sequence_data_prints_one_table_with_every_method(tmp_path):
    data = _columns(tmp_path / "per.txt", "PER")
    common = [f"data.train={data}", f"data.test={data}", "data.name=conll2003", "student.name=tagger",
              "student.hidden=4", "epochs=1", "device=cpu", f"runs_dir={tmp_path}"]  # fmt: skip
    assert _kdlab("train", *common, "name=t", "--quiet", cwd=tmp_path).returncode == 0
    out = _kdlab("compare", *common, f"teacher={tmp_path / 't'}", "methods=[token_kd,structural_kd]", "name=c",
                 "--quiet", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    for row in ("teacher", "independent (ce)", "token_kd", "structural_kd"):
        assert row in out.stdout
    assert "span F1 %" in out.stdout and (tmp_path / "c" / "summary.json").is_file()
    assert all((tmp_path / "c" / name).is_file() for name in ("compare.json", "compare.md", "compare.png"))
    evaluated = _kdlab("evaluate", str(tmp_path / "c" / "token_kd-seed0"), "--teacher", str(tmp_path / "t"),
                       "--data", "conll2003", "--data-option", f"train={data}", "--data-option", f"test={data}",
                       "--device", "cpu", cwd=tmp_path)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    assert "accuracy %" in evaluated.stdout and "sentence_agreement %" in evaluated.stdout
