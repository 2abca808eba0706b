"""The causal-LM comparison runners of `kdlab bench lm`: the plain-PyTorch floor takes real steps, samples
reproducibly through its KV cache and computes the per-token forward KL on the completion; TRL's GKD trainer sees
the same token ids, samples the same number of tokens, computes the same loss and times its steps.

Tiny GPT-2s (2 layers, width 32, a ~300-token byte-level BPE vocabulary), 12 + 4 tokens, batches of 2."""

import copy
import math

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from kdlab.bench.lm_reference import floor_step, kv_cache_sample, run_floor  # noqa: E402

PROMPT, COMPLETION, BATCH = 12, 4, 2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the steps are tiny and the machine's 2 cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE trained on a few sentences, with an end-of-text and a pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    texts = [f"the teacher tells the student {n} things about the quick brown fox" for n in range(100)]
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(texts, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<pad>")


def gpt2(vocab_size: int, seed: int, eos_id: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=vocab_size, n_positions=32, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=eos_id, eos_token_id=eos_id, attn_implementation="sdpa",
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


@pytest.fixture(scope="module")
def vocab(tokenizer) -> int:
    return len(tokenizer)


@pytest.fixture
def pair(vocab):
    return gpt2(vocab, seed=0).eval(), gpt2(vocab, seed=1).train()


@pytest.fixture(scope="module")
def ids(vocab) -> torch.Tensor:
    return torch.randint(0, vocab, (4 * BATCH, PROMPT + COMPLETION), generator=torch.Generator().manual_seed(0))


def adamw(student: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.0)


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("on_policy", [False, True])
def test_a_floor_step_changes_the_student_and_not_the_teacher(pair, ids, on_policy):
    teacher, student = pair
    before_teacher, before_student = weights(teacher), weights(student)
    loss = floor_step(
        teacher, student, adamw(student), ids[:BATCH], PROMPT, on_policy=on_policy, max_new_tokens=COMPLETION,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert loss.shape == () and math.isfinite(loss.item()) and loss.item() > 0 and not loss.requires_grad
    assert all(torch.equal(a, b) for a, b in zip(before_teacher, teacher.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(before_student, student.parameters(), strict=True))
    assert student.training and not teacher.training
    assert all(p.grad is None for p in student.parameters())  # zero_grad(set_to_none) after the step


def test_on_policy_steps_with_a_seeded_generator_are_reproducible(pair, ids):
    teacher, student = pair
    runs = []
    for _ in range(2):
        copy_of_student = copy.deepcopy(student)
        optimizer, generator = adamw(copy_of_student), torch.Generator().manual_seed(7)
        losses = []
        for batch in ids.split(BATCH)[:2]:
            loss = floor_step(
                teacher, copy_of_student, optimizer, batch, PROMPT, on_policy=True, max_new_tokens=COMPLETION,
                generator=generator,
            )  # fmt: skip
            losses.append(loss)
        runs.append((torch.stack(losses), weights(copy_of_student)))
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))


def test_the_kv_cache_sampler_draws_what_full_forwards_draw(pair, ids):
    _, student = pair
    student.eval()
    prompts = ids[:BATCH, :PROMPT]
    cached = kv_cache_sample(student, prompts, COMPLETION, torch.Generator().manual_seed(3))
    generator, sequence = torch.Generator().manual_seed(3), prompts
    with torch.no_grad():
        for _ in range(COMPLETION):
            probabilities = torch.softmax(student(input_ids=sequence).logits[:, -1], dim=-1)
            sequence = torch.cat([sequence, torch.multinomial(probabilities, 1, generator=generator)], dim=1)
    assert cached.shape == (BATCH, COMPLETION) and torch.equal(cached, sequence[:, PROMPT:])


def forward_kl_float64(teacher, student, ids: torch.Tensor) -> float:
    """Mean over completion tokens of Σ_v p_T(v) (log p_T(v) − log p_S(v)), position t predicting token t + 1, from
    float64 copies of the models and their full logits."""
    teacher, student = copy.deepcopy(teacher).double().eval(), copy.deepcopy(student).double().eval()
    with torch.no_grad():
        teacher_logits, student_logits = teacher(input_ids=ids).logits, student(input_ids=ids).logits
    total, count = 0.0, 0
    for row in range(ids.shape[0]):
        for position in range(PROMPT - 1, ids.shape[1] - 1):  # predicts the completion tokens PROMPT … end
            p = torch.softmax(teacher_logits[row, position], dim=-1)
            q = torch.softmax(student_logits[row, position], dim=-1)
            total += float((p * (p.log() - q.log())).sum())
            count += 1
    assert count == ids.shape[0] * COMPLETION
    return total / count


def test_the_floor_loss_is_the_per_token_forward_kl_on_the_completion(pair, ids):
    teacher, student = pair
    batch = ids[:BATCH]
    expected = forward_kl_float64(teacher, student, batch)
    loss = floor_step(teacher, student, adamw(student), batch, PROMPT, on_policy=False, max_new_tokens=COMPLETION)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_run_floor_times_the_timed_steps(pair, ids):
    teacher, student = pair
    batches = list(ids.split(BATCH))
    seconds = run_floor(
        teacher, student, batches, on_policy=True, warmup=1, steps=2, prompt_length=PROMPT, max_new_tokens=COMPLETION
    )
    assert len(seconds) == 2 and all(s > 0 for s in seconds)


# ---- TRL's GKD trainer ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trl():
    pytest.importorskip("trl")
    from kdlab.bench import lm_trl

    return lm_trl


def test_trl_sees_the_same_ids_and_computes_the_floor_loss(trl, pair, ids, tokenizer, tmp_path):
    teacher, student = pair
    trainer = trl.gkd_trainer(
        teacher, student, tokenizer, ids, PROMPT, lmbda=0.0, batch_size=BATCH, max_new_tokens=COMPLETION,
        max_steps=1, output_dir=tmp_path,
    )  # fmt: skip
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(BATCH)])
    assert torch.equal(batch["input_ids"], ids[:BATCH]) and torch.equal(batch["prompts"], ids[:BATCH, :PROMPT])
    labels = batch["labels"]
    assert (labels[:, :PROMPT] == -100).all() and torch.equal(labels[:, PROMPT:], ids[:BATCH, PROMPT:])
    assert batch["attention_mask"].all()
    generation = trainer.generation_config
    assert (generation.max_new_tokens, generation.temperature, generation.do_sample) == (COMPLETION, 1.0, True)
    assert generation.eos_token_id is None and generation.top_k == 0
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, dict(batch))
    floor_loss = floor_step(
        teacher, student, adamw(student), ids[:BATCH], PROMPT, on_policy=False, max_new_tokens=COMPLETION
    )
    assert trl_loss.item() == pytest.approx(floor_loss.item(), rel=1e-5)
    assert trainer.model is not student and trainer.teacher_model is not teacher  # TRL edits copies


@pytest.fixture
def generations(trl, monkeypatch) -> list[tuple[torch.Size, int, torch.Tensor]]:
    """What TRL's on-policy steps generate: (sequence shape, tokens in the loss, completions), one per step."""
    gkd = trl.import_trl()
    original, generated = gkd.GKDTrainer.generate_on_policy_outputs, []

    def recording(model, inputs, generation_config):
        outputs = original(model, inputs, generation_config)
        generated.append((outputs[0].shape, int((outputs[2] != -100).sum()), outputs[0][:, PROMPT:]))
        return outputs

    monkeypatch.setattr(gkd.GKDTrainer, "generate_on_policy_outputs", staticmethod(recording))
    return generated


@pytest.mark.parametrize(("lmbda", "tuned"), [(0.0, True), (1.0, True), (1.0, False)])
def test_trl_gkd_times_one_step_after_one_warm_up(trl, pair, ids, tokenizer, tmp_path, generations, lmbda, tuned):
    teacher, student = pair
    seconds = trl.run_trl_gkd(
        teacher, student, tokenizer, ids, PROMPT, lmbda=lmbda, batch_size=BATCH, max_new_tokens=COMPLETION, warmup=1,
        steps=1, tuned=tuned, output_dir=tmp_path,
    )  # fmt: skip
    assert len(seconds) == 1 and seconds[0] > 0
    # on-policy: every step samples exactly COMPLETION tokens per prompt, all of them in the loss
    shape, in_loss = torch.Size([BATCH, PROMPT + COMPLETION]), BATCH * COMPLETION
    assert [(g[0], g[1]) for g in generations] == ([(shape, in_loss)] * 2 if lmbda == 1.0 else [])


def test_trl_samples_past_the_end_of_text_token(trl, pair, ids, tokenizer, tmp_path, generations):
    """A student that almost surely draws <|endoftext|> every time: generation must not stop at it."""
    teacher, student = pair
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        student.transformer.ln_f.weight.zero_()
        student.transformer.ln_f.bias.fill_(1.0)  # every position's final state is all ones ...
        student.transformer.wte.weight[eos] = 5.0  # ... so the (tied) head gives EOS a logit of 160
    trl.run_trl_gkd(
        teacher, student, tokenizer, ids, PROMPT, lmbda=1.0, batch_size=BATCH, max_new_tokens=COMPLETION, warmup=0,
        steps=1, output_dir=tmp_path,
    )  # fmt: skip
    [(shape, in_loss, completions)] = generations
    assert (completions == eos).all()
    assert shape == (BATCH, PROMPT + COMPLETION) and in_loss == BATCH * COMPLETION
