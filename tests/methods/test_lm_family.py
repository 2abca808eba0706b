"""``lm_kd`` on tiny GPT-2s: every divergence takes one finite step that trains the student only; a student equal to
its teacher has a zero divergence; accumulation windows give the one-batch step; the prompts' logits can be left out;
sequence-level and on-policy modes train on continuations, drawn again the same way after a resume."""

import copy

import pytest
import torch

from kdlab.core.errors import ConfigError
from kdlab.core.outputs import as_model_output
from kdlab.data.lm import LMLoader, LMTokens
from kdlab.losses import IGNORE_INDEX, next_token_targets
from kdlab.methods import METHODS, MethodContext, build_method, method_params
from kdlab.methods.lm import LMContext, lm_labels
from kdlab.training.engine import Engine, Recipe
from kdlab.training.optim import OptimConfig
from kdlab.training.teachers import Teacher

transformers = pytest.importorskip("transformers")
VOCAB = 48
DIVERGENCES = ("forward_kl", "reverse_kl", "jsd", "tvd", "skew_kl")


def gpt2(layers=2, width=16, seed=0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=width, n_layer=layers, n_head=2,
                                     resid_pdrop=0, embd_pdrop=0, attn_pdrop=0, bos_token_id=0, eos_token_id=0,
                                     use_cache=False)  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def tokens(lengths=(12, 7, 10, 4, 9), prompts=(3, 2, 5, 1, 4), seed=0) -> LMTokens:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (len(lengths), max(lengths)), generator=g)
    return LMTokens(ids, torch.tensor(lengths), torch.tensor(prompts), max(lengths))


def make(values=None, student=None, teacher=None, prompts=True):
    student = student if student is not None else gpt2()
    teacher = Teacher(teacher if teacher is not None else gpt2(3, 32, seed=1))
    context = MethodContext(student, teacher, VOCAB, label_loss=lm_labels, label_smoothing=False,
                            extras=LMContext(eos_ids=(), pad_id=0, has_prompts=prompts))  # fmt: skip
    return student, teacher, build_method("lm_kd", values or {}, context)


def engine(student, method, teacher, source, lr=1.0):
    optim = OptimConfig(name="sgd", lr=lr, momentum=0.0, weight_decay=0.0, schedule="constant")
    return Engine(student, method, source, Recipe(epochs=1, optim=optim), state_path="/nonexistent/state.pt",
                  teacher=lambda batch: teacher(batch.x), progress=False)  # fmt: skip


def test_lm_kd_serves_causal_lm_and_ce_does_too():
    assert METHODS.names("causal_lm") == ["ce", "lm_kd"]
    assert "causal_lm" not in (METHODS.entry("kd").tasks or ())  # class-logit methods would average over [B, T, V]


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_one_finite_step_trains_the_student_and_not_the_teacher(divergence):
    student, teacher, method = make({"divergence": divergence, "ce_weight": 0.3})
    before_s, before_t = copy.deepcopy(student.state_dict()), copy.deepcopy(teacher.state_dict())
    loader = LMLoader(tokens(), 5)
    loss, terms = engine(student, method, teacher, loader, lr=0.1).step(next(iter(loader.epoch(0))))
    assert torch.isfinite(loss) and set(terms) == {"kd", "ce"}
    assert any(not torch.equal(v, student.state_dict()[k]) for k, v in before_s.items())
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before_t.items())
    assert not list(method.parameters()) and not method.state_dict().keys() - {"_extra_state"}


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_a_student_equal_to_its_teacher_has_a_zero_divergence(divergence):
    twin = gpt2(seed=3)
    student, teacher, method = make({"divergence": divergence}, student=copy.deepcopy(twin), teacher=twin)
    (batch,) = [*LMLoader(tokens(), 5).epoch(0)]
    with torch.no_grad():
        terms = method(as_model_output(student(**batch.x)), teacher(batch.x), batch)
    assert abs(float(terms["kd"])) < 1e-6


def test_a_window_of_unequal_micro_batches_takes_the_step_of_one_batch():
    steps = []
    for micro in (None, 2):
        student, teacher, method = make({"divergence": "jsd", "ce_weight": 0.5}, student=gpt2(seed=7))
        loader = LMLoader(tokens(), 5, micro_batch_size=micro)
        window = next(iter(loader.epoch(0)))
        assert isinstance(window, list) == (micro is not None)
        engine(student, method, teacher, loader).step(window)
        steps.append(student.state_dict())
    assert all(torch.allclose(steps[0][k], steps[1][k], atol=1e-6, rtol=0) for k in steps[0])


def test_leaving_out_the_prompts_logits_changes_no_loss():
    student, teacher, method = make({"divergence": "forward_kl", "ce_weight": 0.5})
    out = []
    for trim in (False, True):
        (batch,) = [*LMLoader(tokens(prompts=(3, 2, 5, 3, 4)), 5, trim_logits=trim).epoch(0)]
        assert batch.x.get("logits_to_keep") == (12 - 1 if trim else None)
        with torch.no_grad():
            out.append(method(as_model_output(student(**batch.x)), teacher(batch.x), batch))
    assert all(torch.allclose(out[0][k], out[1][k], atol=1e-6) for k in out[0])


def test_on_policy_with_lambda_zero_trains_on_the_data_and_with_one_on_the_students_continuations():
    _, _, method = make({"mode": "on_policy", "lmbda": 0.0})
    batches = [next(iter(LMLoader(tokens(), 5).epoch(0)))]
    assert method.prepare_batches(batches) is batches
    _student, _teacher, method = make({"mode": "on_policy", "lmbda": 1.0, "max_new_tokens": 6})
    (made,) = method.prepare_batches(batches)
    assert made.x["input_ids"].shape[1] == 5 + 6  # the longest prompt, then 6 sampled tokens per row
    _, mask = next_token_targets(made.y)
    assert int(made.extras.num_tokens) == int(mask.sum()) == 5 * 6
    assert (made.y[:, :5] == IGNORE_INDEX).all()


def test_sequence_level_kd_learns_the_teachers_greedy_continuations():
    _student, teacher, method = make({"mode": "sequence", "generation_temperature": 0.0, "max_new_tokens": 4})
    batch = next(iter(LMLoader(tokens(), 5).epoch(0)))
    (made,) = method.prepare_batches([batch])
    model = teacher.members[0]
    for i, n in enumerate(batch.extras.prompt_lengths.tolist()):
        greedy = model.generate(batch.x["input_ids"][i : i + 1, :n], max_new_tokens=4, do_sample=False,
                                eos_token_id=None, pad_token_id=0)  # fmt: skip
        assert made.x["input_ids"][i, 5:].tolist() == greedy[0, n:].tolist()


def test_a_resumed_method_draws_the_same_continuations():
    torch.manual_seed(11)
    _, _, method = make({"mode": "on_policy", "lmbda": 1.0, "max_new_tokens": 5})
    batches = [next(iter(LMLoader(tokens(), 5).epoch(0)))]
    method.prepare_batches(batches)
    state = copy.deepcopy(method.state_dict())
    second = method.prepare_batches(batches)[0].x["input_ids"]
    torch.manual_seed(99)  # another seed at build: the saved state decides
    _, _, resumed = make({"mode": "on_policy", "lmbda": 1.0, "max_new_tokens": 5}, student=method.models[0])
    resumed.load_state_dict(state)
    assert torch.equal(resumed.prepare_batches(batches)[0].x["input_ids"], second)
    assert not torch.equal(method.prepare_batches(batches)[0].x["input_ids"], second)  # the next step draws anew


@pytest.mark.parametrize(
    ("values", "needle"),
    [({"beta": 1.5}, "method.beta must lie in [0, 1]; got 1.5"), ({"lmbda": -0.1}, "method.lmbda"),
     ({"divergence": "kl"}, "forward_kl"), ({"mode": "online"}, "on_policy"), ({"max_new_tokens": 0}, "≥ 1")],
)  # fmt: skip
def test_bad_hyper_parameters_are_refused_while_planning(values, needle):
    with pytest.raises(ConfigError) as error:
        method_params("lm_kd", values)
    assert needle in str(error.value)


def test_generation_modes_need_prompts():
    with pytest.raises(ConfigError, match=r"data\.prompt_length"):
        make({"mode": "on_policy"}, prompts=False)


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_the_chunked_loss_equals_the_full_logits_loss_and_gradient(divergence):
    results = []
    for chunk in (None, 7):
        student, teacher, method = make({"divergence": divergence, "ce_weight": 0.3, "chunk_size": chunk},
                                        student=gpt2(seed=5))  # fmt: skip
        (batch,) = [*LMLoader(tokens(), 5, hidden_states=chunk is not None).epoch(0)]
        out = as_model_output(student(**batch.x))
        assert (out.logits.numel() == 0) == (chunk is not None) and (out.hidden is not None) == (chunk is not None)
        terms = method(out, teacher(batch.x), batch)
        loss = sum(terms.values())
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in student.named_parameters()}))
    (full, full_grads), (chunked, chunked_grads) = results
    assert torch.allclose(full, chunked, atol=1e-6)
    assert all(torch.allclose(full_grads[n], chunked_grads[n], atol=1e-6) for n in full_grads)


@pytest.mark.parametrize("tail", ["bucket", "renormalise"])
def test_a_whole_vocabulary_top_k_teacher_gives_the_online_loss(tail):
    from kdlab.cache.lm import TopKTeacher, target_offsets
    from kdlab.cache.store import CachedOutputs

    student, teacher, method = make({"divergence": "jsd", "top_k_tail": tail})
    data = tokens()
    (batch,) = [*LMLoader(data, 5).epoch(0)]
    _, mask = next_token_targets(batch.y)
    log_probs = torch.log_softmax(teacher(batch.x).logits[:, :-1][mask], -1)
    values, ids = log_probs.topk(VOCAB, -1)
    arrays = {"indices": ids.int()[:, None], "values": values[:, None], "tail": torch.full((len(ids), 1), -torch.inf)}
    cache = TopKTeacher(CachedOutputs(None, {"num_classes": VOCAB}, arrays), target_offsets(data), torch.device("cpu"))
    out = as_model_output(student(**batch.x))
    online = method(out, teacher(batch.x), batch)["kd"]
    cached = method(out, cache(batch), batch)["kd"]
    if tail == "bucket":
        assert torch.allclose(online, cached, atol=1e-6)
    else:  # renormalising a whole distribution changes nothing either
        assert torch.allclose(online, cached, atol=1e-5)


def test_chunk_size_and_raw_tails_are_checked_while_planning():
    with pytest.raises(ConfigError, match="chunk_size must be ≥ 1"):
        method_params("lm_kd", {"chunk_size": 0})
    with pytest.raises(ConfigError, match="top_k_tail=raw is DistillKit's partial forward KL"):
        method_params("lm_kd", {"top_k_tail": "raw", "divergence": "jsd"})
