"""Sampling continuations: left-padded prompts give each row the logits it would have alone, greedy decoding equals
transformers' own, draws are reproducible from a generator, and rows keep their tokens up to the first EOS."""

import itertools

import pytest
import torch

from kdlab.losses import IGNORE_INDEX
from kdlab.ops.sampling import left_padded, pick, sample_completions, until_first_eos

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=2, n_head=2, bos_token_id=0,
                                     eos_token_id=0)  # fmt: skip
    return transformers.GPT2LMHeadModel(config).eval()


PROMPTS = torch.tensor([[5, 6, 7, 0, 0, 0], [8, 9, 10, 11, 12, 13], [14, 0, 0, 0, 0, 0]])
LENGTHS = torch.tensor([3, 6, 1])


def test_left_padding_puts_each_prompt_at_the_end():
    ids, mask = left_padded(PROMPTS, LENGTHS, 6, pad_id=39)
    assert ids.tolist() == [[39, 39, 39, 5, 6, 7], [8, 9, 10, 11, 12, 13], [39, 39, 39, 39, 39, 14]]
    assert mask.sum(1).tolist() == [3, 6, 1]


def test_each_row_of_a_sampled_batch_has_the_logits_it_would_have_alone(model):
    made = sample_completions(model, PROMPTS, LENGTHS, 6, max_new_tokens=4, generator=torch.Generator().manual_seed(0))
    together = model(**made.inputs).logits
    for i, n in enumerate(LENGTHS.tolist()):
        alone = torch.cat([PROMPTS[i, :n], made.inputs["input_ids"][i, 6:]])
        assert torch.allclose(together[i, 6 - n :], model(input_ids=alone[None]).logits[0], atol=1e-5)


def test_greedy_continuations_equal_transformers_generate(model):
    made = sample_completions(model, PROMPTS, LENGTHS, 6, max_new_tokens=5, temperature=0)
    for i, n in enumerate(LENGTHS.tolist()):
        reference = model.generate(PROMPTS[i : i + 1, :n], max_new_tokens=5, do_sample=False, eos_token_id=None,
                                   pad_token_id=0)  # fmt: skip
        assert made.inputs["input_ids"][i, 6:].tolist() == reference[0, n:].tolist()


def test_draws_are_reproducible_and_the_generator_decides_them(model):
    def draw(seed):
        return sample_completions(model, PROMPTS, LENGTHS, 6, max_new_tokens=6,
                                  generator=torch.Generator().manual_seed(seed)).inputs["input_ids"]  # fmt: skip

    assert torch.equal(draw(3), draw(3)) and not torch.equal(draw(3), draw(4))


def test_the_model_is_back_in_its_mode_after_sampling(model):
    model.train()
    sample_completions(model, PROMPTS, LENGTHS, 6, max_new_tokens=2)
    assert model.training
    model.eval()


def test_until_first_eos_keeps_the_tokens_up_to_and_including_the_first_eos_by_enumeration():
    for row in itertools.product([1, 2, 3], repeat=4):
        keep = until_first_eos(torch.tensor([row]), eos_ids=[2, 3])[0].tolist()
        first = next((i for i, t in enumerate(row) if t in (2, 3)), len(row) - 1)
        assert keep == [i <= first for i in range(4)], row
    assert until_first_eos(torch.tensor([[2, 2]]), eos_ids=[]).all()  # no EOS ids: every token


def test_labels_and_masks_follow_the_first_eos(model):
    made = sample_completions(model, PROMPTS, LENGTHS, 6, max_new_tokens=8, eos_ids=list(range(40)))
    # every token is an EOS: each row keeps exactly its first sampled token
    assert made.kept.tolist() == [1, 1, 1]
    assert (made.labels[:, :6] == IGNORE_INDEX).all() and (made.labels[:, 6] != IGNORE_INDEX).all()
    assert (made.labels[:, 7:] == IGNORE_INDEX).all() and (made.inputs["attention_mask"][:, 7:] == 0).all()


def test_top_k_draws_only_among_the_k_most_likely():
    logits = torch.tensor([[0.0, 5.0, 4.0, -3.0]]).repeat(200, 1)
    drawn = pick(logits, 1.0, torch.Generator().manual_seed(0), top_k=2)
    assert set(drawn.tolist()) == {1, 2}
    assert pick(logits[:1], 0.0, None).tolist() == [1]
