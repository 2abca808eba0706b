"""Teachers whose vocabulary differs from the student's: another tokenizer (ULD and hybrid at byte-aligned
positions, each model evaluated on its own tokens, CE per byte comparing them), and a padded vocabulary (more logits
than tokens: cut to the tokenizer, never padded)."""

import copy

import pytest
import torch
from lm_jobs import SMALL, one_paragraph, run, summary

from kdlab.core.outputs import as_model_output
from kdlab.data.lm import LMLoader, LMTokens
from kdlab.methods import MethodContext, build_method
from kdlab.methods.lm import LMContext, lm_labels
from kdlab.training.teachers import Teacher

transformers = pytest.importorskip("transformers")
# a student reading the data set's 256-token BPE; the teacher reads its own 512-token one
OTHER = "student={name: hf, config: gpt2, n_layer: 1, n_embd: 16, n_head: 2, n_positions: 48, tokenizer: data}"


@pytest.mark.parametrize("divergence", ["uld", "hybrid"])
def test_a_teacher_with_another_tokenizer_distils_at_aligned_positions(capsys, tmp_path, lm_teacher, divergence):
    code, _, err = run(capsys, "distill", f"teacher={lm_teacher}", OTHER, "method=lm_kd",
                         f"method.divergence={divergence}", "method.ce_weight=0.5", *SMALL, "data.vocab_size=300",
                         f"runs_dir={tmp_path}", "name=x")  # fmt: skip
    assert code == 0, err
    s = summary(tmp_path / "x")
    assert s["tokenizers"] == "cross" and s["vocab_size"] == 300 and 0 < s["shared_tokens"] <= 300
    student, teacher = s["student"]["test"], s["teacher"]["test"]
    assert {"nll", "nll_per_byte", "uld", "aligned_positions"} <= set(student) and "agreement" not in student
    assert teacher["tokens"] != student["tokens"]  # each model on its own tokens of the same texts
    assert 0 < student["uld"] <= 2 and teacher["nll_per_byte"] > 0


def test_token_level_divergences_and_the_cache_are_refused_across_tokenizers(capsys, tmp_path, lm_teacher):
    base = [f"teacher={lm_teacher}", OTHER, "method=lm_kd", *SMALL, "data.vocab_size=300",
            f"runs_dir={tmp_path / 'runs'}", "name=bad"]  # fmt: skip
    for extra, needles in [
        ([], ["another tokenizer", "method.divergence=forward_kl", "uld"]),
        (["method.divergence=uld", "cache.top_k=8"], ["cache.top_k", "another tokenizer runs online"]),
        (["method.divergence=uld", "method.mode=on_policy", "data.prompt_length=8"], ["mode=supervised"]),
    ]:
        code, _, err = run(capsys, "distill", *base, *extra)
        one_paragraph(code, err, *needles)
    code, _, err = run(capsys, "distill", f"teacher={lm_teacher}", "student={name: hf, config: teacher, n_layer: 1}",
                       "method=lm_kd", "method.divergence=uld", *SMALL, f"runs_dir={tmp_path / 'runs'}",
                       "name=bad")  # fmt: skip
    one_paragraph(code, err, "method.divergence=uld compares models with different tokenizers")
    assert not (tmp_path / "runs").exists()


def test_a_padded_vocabulary_is_cut_to_the_tokenizer_never_padded():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=1, n_head=2, use_cache=False,
                                     resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)  # fmt: skip
    teacher = transformers.GPT2LMHeadModel(config)
    padded = copy.deepcopy(teacher)
    padded.resize_token_embeddings(48)  # 8 extra logits no token reaches, initialised at random
    with torch.no_grad():
        padded.get_output_embeddings().weight[40:] = 5.0  # and large: kept, they would take most of the mass
    student = transformers.GPT2LMHeadModel(config)
    g = torch.Generator().manual_seed(1)
    tokens = LMTokens(torch.randint(0, 40, (3, 10), generator=g), torch.tensor([10, 7, 9]), torch.tensor([2, 1, 3]), 10)
    (batch,) = [*LMLoader(tokens, 3).epoch(0)]
    losses = []
    for model in (teacher, padded):
        context = MethodContext(student, Teacher(model), 40, label_loss=lm_labels, label_smoothing=False,
                                extras=LMContext(vocab_size=40))  # fmt: skip
        method = build_method("lm_kd", {"divergence": "jsd"}, context)
        losses.append(method(as_model_output(student(**batch.x)), Teacher(model)(batch.x), batch)["kd"])
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
