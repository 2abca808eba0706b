"""Encoder methods tinybert, minilm, minilm_v2 and attention_cls on tiny BERTs: one finite step that trains only the
student and the method, zero intermediate losses for a student equal to its teacher, invariance to padding and to a
teacher cache padded further, TinyBERT's stages, and the refusals of __init__."""

import copy

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.methods import METHODS, MethodContext, build_method, method_params
from kdlab.methods.encoder import TextContext
from kdlab.training.taps import Taps
from kdlab.training.teachers import Teacher

NAMES = ("tinybert", "minilm", "minilm_v2", "attention_cls")
SMALL = {"minilm_v2": {"relation_heads": 4}}  # 12 relation heads divide no tiny width
INTERMEDIATE = {  # the terms that compare features (zero for a student equal to its teacher)
    "tinybert": {"embedding", "hidden", "attention"},
    "minilm": {"attention", "value_relation"},
    "minilm_v2": {"query_relation", "key_relation", "value_relation"},
    "attention_cls": {"attention", "cls"},
}
VOCAB, CLASSES = 100, 3


def bert(width=32, layers=2, heads=4, seed=0):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB, hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=2 * width, max_position_embeddings=32, num_labels=CLASSES,
        initializer_range=0.2,  # sharper attention than the 0.02 of pre-training, so that models differ clearly
    )  # fmt: skip
    return BertForSequenceClassification(config)


def make(name, values=None, student=None, teacher=None, epochs=2, extras=None):
    teacher = Teacher(teacher if teacher is not None else bert(64, 4, 4, seed=1))
    student = student if student is not None else bert()
    values = {**SMALL.get(name, {}), **(values or {})}
    context = MethodContext(student, teacher, CLASSES, epochs=epochs, extras=extras)
    method = build_method(name, values, context)
    teacher.tap(method.teacher_layers)
    return student, teacher, method


def batch(lengths=(7, 5, 3, 1), length=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (len(lengths), length), generator=g)
    mask = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()
    y = torch.randint(0, CLASSES, (len(lengths),), generator=g)
    return Batch(x={"input_ids": ids, "attention_mask": mask}, y=y, index=torch.arange(len(lengths)))


def pad_further(b, extra=4, seed=5):
    """The same batch with ``extra`` more positions of random ids, all padded."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.cat([b.x["input_ids"], torch.randint(1, VOCAB, (len(b), extra), generator=g)], 1)
    mask = torch.cat([b.x["attention_mask"], torch.zeros(len(b), extra, dtype=torch.long)], 1)
    return Batch(x={"input_ids": ids, "attention_mask": mask}, y=b.y, index=b.index)


def terms_of(student, teacher, method, b, teacher_batch=None):
    with Taps(student, method.student_layers, owner="student") as taps:
        logits = student(**b.x).logits
        student_out = ModelOutput(logits, taps.collect())
    return method(student_out, teacher((teacher_batch or b).x), b)


@pytest.mark.parametrize("name", NAMES)
def test_registered_for_text_with_a_summary_and_typed_defaults(name):
    entry = METHODS.get(name)
    assert METHODS.entry(name).tasks == ("text_classification",)
    assert entry.needs_teacher and entry.summary
    assert method_params(name, {}).ce_weight >= 0


@pytest.mark.parametrize("name", NAMES)
def test_one_finite_step_trains_the_student_and_the_method_not_the_teacher(name):
    student, teacher, method = make(name, {"ce_weight": 0.5})
    terms = terms_of(student, teacher, method, batch())
    assert set(terms) >= INTERMEDIATE[name] | {"ce"}
    assert all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    before = copy.deepcopy(student.state_dict())
    optimizer = torch.optim.SGD([*student.parameters(), *method.parameters()], lr=0.1)
    sum(terms.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in method.parameters())
    if name in ("tinybert", "attention_cls"):  # the projections from width 32 to 64 learn
        assert any(p.grad.abs().sum() > 0 for p in method.parameters())
    optimizer.step()
    assert any(not torch.equal(v, student.state_dict()[k]) for k, v in before.items())


def identity_projections(method):
    with torch.no_grad():
        for module in method.modules():
            if isinstance(module, nn.Linear):
                module.weight.copy_(torch.eye(module.out_features, module.in_features))
                module.bias.zero_()


@pytest.mark.parametrize("name", NAMES)
def test_a_student_equal_to_its_teacher_has_zero_intermediate_losses(name):
    teacher = bert(seed=3).eval()
    student, teacher, method = make(name, student=copy.deepcopy(teacher), teacher=teacher)
    identity_projections(method)
    student.eval()
    terms = terms_of(student, teacher, method, batch())
    for term in INTERMEDIATE[name]:
        assert abs(terms[term].item()) < 1e-5, term
    other = terms_of(*make(name, student=bert(seed=4).eval(), teacher=teacher.members[0]), batch())
    assert all(other[term].item() > 1e-4 for term in INTERMEDIATE[name])


@pytest.mark.parametrize("name", NAMES)
def test_padding_further_or_a_longer_teacher_cache_changes_no_term(name):
    student, teacher, method = make(name)
    student.eval()
    b = batch()
    reference = terms_of(student, teacher, method, b)
    longer = terms_of(student, teacher, method, pad_further(b))
    # the teacher's features (as from a cache) are padded further than the batch: the method cuts them to T
    cached = terms_of(student, teacher, method, b, teacher_batch=pad_further(b, extra=9))
    for term, value in reference.items():
        assert longer[term].item() == pytest.approx(value.item(), abs=1e-5), term
        assert cached[term].item() == pytest.approx(value.item(), abs=1e-5), term


def test_a_distilbert_student_learns_from_a_bert_teacher():
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64, num_labels=CLASSES)
    student, teacher, method = make("tinybert", student=DistilBertForSequenceClassification(config))
    assert method.student_layers[0] == "distilbert.embeddings"
    terms = terms_of(student, teacher, method, batch())
    assert all(torch.isfinite(t) for t in terms.values())


def test_tinybert_uniform_map_taps_blocks_two_and_four_of_the_teacher():
    _, _, method = make("tinybert")
    assert method.pairs == [(1, 2), (2, 4)]
    assert method.teacher_layers[:3] == ("bert.embeddings", "bert.encoder.layer.1", "bert.encoder.layer.3")
    assert "bert.encoder.layer.3.attention.self.query" in method.teacher_layers


def test_tinybert_two_stages_in_one_run():
    student, teacher, method = make("tinybert", {"intermediate_epochs": 1, "ce_weight": 1.0}, epochs=3)
    assert set(terms_of(student, teacher, method, batch())) == {"embedding", "hidden", "attention"}
    method.start_epoch(1, 3)
    assert set(terms_of(student, teacher, method, batch())) == {"prediction", "ce"}
    method.start_epoch(0, 3)
    assert "prediction" not in terms_of(student, teacher, method, batch())
    _, _, joint = make("tinybert")
    assert set(terms_of(student, teacher, joint, batch())) == {"embedding", "hidden", "attention", "prediction"}


def test_layer_map_values_are_typed_and_checked_while_planning():
    assert method_params("tinybert", {"layer_map": [[1, 2], [2, 4]]}).layer_map == [[1, 2], [2, 4]]
    with pytest.raises(ConfigError, match="layer_map must be 'uniform', 'last'"):
        method_params("attention_cls", {"layer_map": "middle"})
    with pytest.raises(ConfigError, match="intermediate_epochs must be ≥ 0"):
        method_params("tinybert", {"intermediate_epochs": -1})
    _, _, explicit = make("attention_cls", {"layer_map": [[2, 3]]})
    assert explicit.pairs == [(2, 3)] and "bert.encoder.layer.2" in explicit.teacher_layers


@pytest.mark.parametrize("name", ["tinybert", "attention_cls"])
def test_a_uniform_map_that_does_not_divide_and_pairs_out_of_range_are_refused(name):
    with pytest.raises(ConfigError, match=r"teacher's 3 blocks.*student's 2.*explicit pairs"):
        make(name, teacher=bert(64, 3, 4))
    with pytest.raises(ConfigError, match=r"pair \[1, 5\] is out of range.*teacher's from 1 to 4"):
        make(name, {"layer_map": [[1, 5]]})
    with pytest.raises(ConfigError, match=r"pair \[0, 0\] is out of range"):
        make(name, {"layer_map": [[0, 0]]})  # the embeddings are tinybert's embedding term, not a pair


@pytest.mark.parametrize("name", ["tinybert", "minilm", "attention_cls"])
def test_different_head_counts_are_refused_where_heads_are_compared(name):
    with pytest.raises(ConfigError, match=r"same number of attention heads.*has 2 and the teacher.*4"):
        make(name, student=bert(32, 2, 2))


def test_minilm_v2_takes_other_head_counts_but_refuses_relation_heads_that_do_not_divide_a_width():
    student, teacher, method = make("minilm_v2", student=bert(32, 2, 2))
    assert torch.isfinite(sum(terms_of(student, teacher, method, batch()).values()))
    with pytest.raises(ConfigError, match=r"relation_heads = 12 must divide both the student's width 32 .* 64"):
        make("minilm_v2", {"relation_heads": 12})
    with pytest.raises(ConfigError, match=r"teacher_layer = 5 .*from 1 to 4"):
        make("minilm_v2", {"teacher_layer": 5})
    _, _, middle = make("minilm_v2", {"teacher_layer": 2})
    assert middle.teacher_layers[0] == "bert.encoder.layer.1.attention.self.query"


@pytest.mark.parametrize("name", NAMES)
def test_different_tokenizers_are_refused(name):
    with pytest.raises(ConfigError, match=r"need teacher and student to read the same tokens.*such as kd"):
        make(name, extras=TextContext(same_tokenizer=False))
    make(name, extras=TextContext())


def test_tinybert_intermediate_epochs_beyond_the_run_are_refused():
    with pytest.raises(ConfigError, match=r"intermediate_epochs = 3 is more than the run's 2 epochs"):
        make("tinybert", {"intermediate_epochs": 3}, epochs=2)
