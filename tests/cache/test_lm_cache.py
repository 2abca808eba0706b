"""The top-k teacher cache of language models: its rows are the teacher's top-k log-probabilities of each trained
position of any batch (shuffled, cut, micro-batched); a cache of another temperature is rebuilt, a damaged one too;
it holds k·(4 + 2) + 4 bytes per token."""

import numpy as np
import pytest
import torch

from kdlab.cache.lm import TopKTeacher, bytes_per_token, find_or_build, lm_cache_key, target_offsets
from kdlab.data.lm import LMLoader, LMTokens
from kdlab.losses import next_token_targets, prediction_logits
from kdlab.training.teachers import Teacher

transformers = pytest.importorskip("transformers")
VOCAB, K = 40, 6


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=16, n_layer=2, n_head=2, use_cache=False)
    return Teacher(transformers.GPT2LMHeadModel(config))


def sequences() -> LMTokens:
    g = torch.Generator().manual_seed(1)
    lengths, prompts = torch.tensor([9, 4, 12, 7, 10, 3]), torch.tensor([2, 0, 5, 1, 3, 1])
    return LMTokens(torch.randint(0, VOCAB, (6, 12), generator=g), lengths, prompts, 12)


def build(teacher, tmp_path, temperature=1.0, dtype="float32", log=lambda m: None):
    data = sequences()
    key = lm_cache_key(teacher, data, top_k=K, temperature=temperature, dtype=dtype, precision="cpu:None")
    cache, built = find_or_build(teacher, LMLoader(data, 4), data, tmp_path / "c", key, log=log)
    return TopKTeacher(cache, target_offsets(data), torch.device("cpu")), built


def test_rows_of_any_batch_are_the_teachers_top_k_at_its_trained_positions(teacher, tmp_path):
    source, built = build(teacher, tmp_path, temperature=2.0)
    assert built and source.nbytes == int(target_offsets(sequences())[-1]) * bytes_per_token(K, "float32")
    loader = LMLoader(sequences(), 4, micro_batch_size=3, shuffle=True, seed=3, trim_logits=True)
    for window in loader.epoch(1):
        for batch in window if isinstance(window, list) else [window]:
            _, mask = next_token_targets(batch.y)
            expected = torch.log_softmax(prediction_logits(teacher(batch.x).logits)[mask] / 2.0, -1)
            out = source(batch)
            values, ids = expected.topk(K, -1)
            assert torch.allclose(out.logits, values, atol=1e-5) and torch.equal(out.structure["topk_ids"], ids)
            rest = expected.scatter(-1, ids, float("-inf")).logsumexp(-1)
            assert torch.allclose(out.structure["tail"], rest, atol=1e-5)


def test_another_temperature_is_rebuilt_and_the_same_is_reused(teacher, tmp_path):
    said = []
    build(teacher, tmp_path)
    assert not build(teacher, tmp_path, log=said.append)[1] and not said
    assert build(teacher, tmp_path, temperature=3.0, log=said.append)[1]
    assert "temperature" in said[0] and "Rebuilding" in said[0]


def test_a_damaged_array_is_found_and_rebuilt(teacher, tmp_path):
    build(teacher, tmp_path)
    values = tmp_path / "c" / "values.npy"
    array = np.load(values)
    array.flat[3] += 1.0
    np.save(values, array)
    said = []
    assert build(teacher, tmp_path, log=said.append)[1] and "checksum" in said[0]


def test_half_precision_values_round_trip(teacher, tmp_path):
    full = build(teacher, tmp_path / "f32")[0]
    for dtype in ("float16", "bfloat16"):
        half = build(teacher, tmp_path / dtype, dtype=dtype)[0]
        batch = next(iter(LMLoader(sequences(), 6).epoch(0)))
        assert torch.equal(half(batch).structure["topk_ids"], full(batch).structure["topk_ids"])
        assert torch.allclose(half(batch).logits, full(batch).logits, rtol=1e-2, atol=2e-2)
        assert half.nbytes == int(target_offsets(sequences())[-1]) * bytes_per_token(K, dtype)


def test_bytes_per_token():
    assert bytes_per_token(128) == 772 and bytes_per_token(8, "bfloat16") == 52 and bytes_per_token(1, "float32") == 12
