"""The anatomy of Hugging Face encoders: paths found by structure give exactly ``output_hidden_states`` and the
attention projections, for BERT, RoBERTa, ELECTRA and DistilBERT; layer maps in hidden-state indices."""

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from kdlab.core.errors import ConfigError
from kdlab.models.encoders import encoder_anatomy, hidden_tensor, layer_pairs
from kdlab.training.taps import Taps
from kdlab.training.teachers import Teacher

SIZES = {"vocab_size": 100, "max_position_embeddings": 40}
BERT_LIKE = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 64, **SIZES}


def encoders() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "bert": BertForSequenceClassification(BertConfig(**BERT_LIKE)),
        "roberta": RobertaForSequenceClassification(RobertaConfig(**BERT_LIKE, pad_token_id=1)),
        "electra": ElectraForSequenceClassification(ElectraConfig(**BERT_LIKE, embedding_size=16)),
        "distilbert": DistilBertForSequenceClassification(
            DistilBertConfig(dim=32, n_layers=3, n_heads=4, hidden_dim=64, **SIZES)
        ),
    }


@pytest.mark.parametrize("name", ["bert", "roberta", "electra", "distilbert"])
def test_tapped_paths_give_exactly_the_hidden_states_and_the_projections(name):
    model = encoders()[name].eval()
    anatomy = encoder_anatomy(model)
    assert (anatomy.num_layers, anatomy.num_heads, anatomy.hidden_size, anatomy.head_dim) == (3, 4, 32, 8)
    assert len(anatomy.layers) == len(anatomy.query) == len(anatomy.key) == len(anatomy.value) == 3
    ids = torch.randint(3, 100, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    paths = [anatomy.hidden(i) for i in range(4)] + [*anatomy.query, *anatomy.key, *anatomy.value]
    with Taps(model, paths) as taps, torch.no_grad():
        reference = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        tapped = taps.collect()
    assert len(reference) == 4
    for i in range(4):
        # a tapped block gives the [B, T, d] tensor itself in transformers 5
        assert isinstance(tapped[anatomy.hidden(i)], torch.Tensor)
        torch.testing.assert_close(hidden_tensor(tapped[anatomy.hidden(i)]), reference[i], rtol=0, atol=0)
    for path in [*anatomy.query, *anatomy.key, *anatomy.value]:
        assert tapped[path].shape == (2, 7, 32)


def test_electra_embeddings_are_its_projection_to_the_hidden_width():
    assert encoder_anatomy(encoders()["electra"]).embeddings == "electra.embeddings_project"
    assert encoder_anatomy(encoders()["distilbert"]).query[0] == "distilbert.transformer.layer.0.attention.q_lin"


def test_a_teacher_wrapper_reads_as_its_member():
    model = encoders()["bert"]
    assert encoder_anatomy(Teacher(model)) == encoder_anatomy(model)
    assert encoder_anatomy(model).hidden(0) == "bert.embeddings"
    assert encoder_anatomy(model).hidden(3) == "bert.encoder.layer.2"


def test_hidden_index_out_of_range_is_refused():
    with pytest.raises(ConfigError, match=r"valid indices are 0 \(the embeddings\) to 3"):
        encoder_anatomy(encoders()["bert"]).hidden(4)


def test_a_model_that_is_not_an_encoder_is_refused_naming_its_class():
    with pytest.raises(ConfigError, match=r"The Sequential is not an encoder.*no config"):
        encoder_anatomy(nn.Sequential(nn.Linear(4, 4)))

    class Odd(nn.Module):
        config = BertConfig(**BERT_LIKE)

        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(nn.Linear(32, 32) for _ in range(3))

    with pytest.raises(ConfigError, match=r"The Odd is not an encoder.*query/key/value.*kd"):
        encoder_anatomy(Odd())


def test_hidden_tensor_reads_tensors_and_tuples():
    x = torch.zeros(2, 5, 8)
    assert hidden_tensor(x) is x and hidden_tensor((x, None)) is x
    with pytest.raises(ConfigError, match=r"\[B, T, d\]"):
        hidden_tensor(torch.zeros(2, 8))


def test_uniform_last_and_explicit_layer_maps():
    assert layer_pairs("uniform", 2, 6, method="m") == [(1, 3), (2, 6)]
    assert layer_pairs("uniform", 3, 3, method="m") == [(1, 1), (2, 2), (3, 3)]
    assert layer_pairs("last", 2, 6, method="m") == [(2, 6)]
    assert layer_pairs([[0, 0], [2, 5]], 2, 6, method="m") == [(0, 0), (2, 5)]


def test_uniform_map_that_does_not_divide_is_refused_with_the_counts_and_explicit_pairs():
    with pytest.raises(ConfigError, match=r"teacher's 6 blocks.*student's 4.*explicit pairs") as error:
        layer_pairs("uniform", 4, 6, method="tinybert")
    assert "layer_map=[[" in str(error.value)


@pytest.mark.parametrize("pairs", [[[3, 1]], [[1, 7]], [[-1, 2]], [[1, 2, 3]]])
def test_explicit_pairs_out_of_range_are_refused(pairs):
    with pytest.raises(ConfigError, match=r"out of range.*student's from 0 to 2 and the teacher's from 0 to 6"):
        layer_pairs(pairs, 2, 6, method="tinybert")


def test_pairs_below_the_lowest_index_and_unknown_maps_are_refused():
    with pytest.raises(ConfigError, match="from 1 to 2"):
        layer_pairs([[0, 0]], 2, 6, method="tinybert", lowest=1)
    with pytest.raises(ConfigError, match="'uniform', 'last'"):
        layer_pairs("middle", 2, 6, method="tinybert")
    with pytest.raises(ConfigError, match="empty"):
        layer_pairs([], 2, 6, method="tinybert")
