"""Language-model jobs end to end on the standard library's source: the CLI offline, next-token fidelity in the
summary, table, index and compare; every data mode; resume; the Python API with Hugging Face objects; kdlab
evaluate; and every planning error as one paragraph before any folder."""

import json
import os
import subprocess
import sys

import pytest
import torch
from lm_jobs import SMALL, STUDENT, one_paragraph, run, summary

import kdlab
from kdlab.models import hf

FIDELITY = {"nll", "perplexity", "accuracy", "ece", "agreement", "kl", "tv", "top5_overlap", "sample_teacher_logp",
            "sample_student_logp"}  # fmt: skip


def test_distill_writes_next_token_fidelity_and_a_loadable_model(capsys, tmp_path, lm_teacher):
    code, out, err = run(capsys, "distill", f"teacher={lm_teacher}", STUDENT, "method=lm_kd", "method.ce_weight=0.2",
                         *SMALL, f"runs_dir={tmp_path}", "name=kd")  # fmt: skip
    assert code == 0, err
    assert "agreement %" in out and "top-5 overlap %" in out and "teacher" in out
    s = summary(tmp_path / "kd")
    assert set(s["student"]["test"]) >= FIDELITY and {"nll", "perplexity"} <= set(s["teacher"]["test"])
    assert s["task"] == "causal_lm" and s["train_sequences"] == 48 and s["teacher_source"]["kind"] == "online"
    test = s["student"]["test"]
    assert 0 <= test["agreement"] <= 1 and test["kl"] >= 0
    assert test["perplexity"] == pytest.approx(2.718281828 ** test["nll"])
    student = hf.load_causal_lm(hf.HF + str(tmp_path / "kd" / "model"), "student")
    assert student.config.n_layer == 1 and hf.is_causal_lm(student)
    code, out, _ = run(capsys, "runs", f"--runs-dir={tmp_path}")
    assert code == 0 and "kd" in out and "stdlib" in out


@pytest.mark.parametrize(
    "options",
    [["method.mode=sequence", "method.max_new_tokens=8", "method.divergence=reverse_kl"],
     ["method.mode=on_policy", "method.lmbda=1.0", "method.max_new_tokens=8", "method.divergence=jsd",
      "data.micro_batch_size=3"],
     ["method.divergence=tvd", "data.packing=true"]],
)  # fmt: skip
def test_every_data_mode_runs_and_records_its_settings(capsys, tmp_path, lm_teacher, options):
    code, _, err = run(capsys, "distill", f"teacher={lm_teacher}", STUDENT, "method=lm_kd", *SMALL,
                       "data.prompt_length=16", *options, f"runs_dir={tmp_path}", "name=m")  # fmt: skip
    assert code == 0, err
    s = summary(tmp_path / "m")
    for option in options:
        key, value = option.split("=")
        section, name = key.split(".")
        recorded = s["method"][name] if section == "method" else s[name]
        assert str(recorded).lower() == value.lower(), (key, recorded)


def test_an_interrupted_on_policy_run_resumes_bit_identically(tmp_path, lm_teacher, interrupt):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, "-m", "kdlab", "distill", f"teacher={lm_teacher}", STUDENT, "method=lm_kd",
            "method.mode=on_policy", "method.lmbda=0.5", "method.max_new_tokens=6", *SMALL[:-1],
            "data.prompt_length=16", "data.train_size=96", "epochs=2", "--quiet"]  # fmt: skip
    whole = subprocess.run([*args, f"runs_dir={tmp_path}", "name=whole"], env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    code, err = interrupt([*args, f"runs_dir={tmp_path}", "name=cut"], tmp_path / "cut" / "state.pt", env)
    assert code != 0 and "kdlab resume" in err, err
    resumed = subprocess.run([sys.executable, "-m", "kdlab", "resume", str(tmp_path / "cut"), "--quiet"], env=env,
                             capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "whole" / "state.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "state.pt", weights_only=False)
    assert all(torch.equal(a["student"][k], b["student"][k]) for k in a["student"])
    assert a["method"]["_extra_state"] == b["method"]["_extra_state"]  # the same number of sampled steps


def test_python_api_with_objects_and_kdlab_evaluate(tmp_path, lm_teacher):
    teacher = hf.load_causal_lm(hf.HF + lm_teacher + "/model", "teacher")
    tokenizer = hf.load_tokenizer(hf.HF + lm_teacher + "/model")
    student = hf.student_from_config("teacher", head="causal_lm", teacher=teacher, n_layer=1)
    train = [{"prompt": "def add(a, b):", "completion": "\n    return a + b\n"},
             {"prompt": "import os", "completion": "\nimport sys\n"}] * 8  # fmt: skip
    test = train[:4]
    result = kdlab.distill(teacher, student, train, test, tokenizer=tokenizer, method="lm_kd", divergence="jsd",
                           beta=0.1, epochs=1, batch_size=4, runs_dir=tmp_path, name="api", device="cpu",
                           data_options={"max_length": 32})  # fmt: skip
    assert hf.is_causal_lm(result.student) and set(result.metrics["student"]["test"]) >= FIDELITY
    assert result.summary["method"]["divergence"] == "jsd" and result.summary["train_sequences"] == 16
    scores = kdlab.evaluate(teacher, result.student, test, tokenizer=tokenizer)
    assert scores["student"]["agreement"] == pytest.approx(result.metrics["student"]["test"]["agreement"])
    assert scores["student"]["kl"] == pytest.approx(result.metrics["student"]["test"]["kl"], rel=1e-5)


def test_kdlab_evaluate_compare_and_list_serve_language_models(capsys, tmp_path, lm_teacher):
    code, out, err = run(capsys, "compare", f"teacher={lm_teacher}", STUDENT,
                         "methods=[ce, {name: lm_kd, label: rkl, divergence: reverse_kl}]", *SMALL,
                         f"runs_dir={tmp_path}", "name=cmp")  # fmt: skip
    assert code == 0, err
    assert "rkl" in out and "agreement %" in out and (tmp_path / "cmp" / "compare.md").is_file()
    measured = summary(tmp_path / "cmp" / "rkl-seed0")["student"]["test"]
    code, out, err = run(capsys, "evaluate", str(tmp_path / "cmp" / "rkl-seed0"), "--teacher", lm_teacher, "--data",
                         "stdlib", "--data-option=vocab_size=512", "--data-option=max_length=32",
                         "--data-option=test_size=24")  # fmt: skip
    assert code == 0, err
    assert f"{100 * measured['agreement']:.2f}" in out, out
    code, out, _ = run(capsys, "list", "causal_lm")
    assert code == 0 and "lm_kd" in out and "stdlib" in out and "lm_files" in out


def test_the_console_script_runs_offline(tmp_path):
    done = subprocess.run([sys.executable, "-m", "kdlab", "list", "causal_lm"], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert done.returncode == 0 and "lm_kd" in done.stdout, done.stderr


def test_bad_input_is_refused_while_planning(capsys, tmp_path, lm_teacher):
    other = tmp_path / "other-tokenizer"
    from kdlab.data.lm import byte_level_bpe

    byte_level_bpe(["x = 1\n"] * 10, 300, name="other").save_pretrained(other)
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "a"},
                                             {"role": "assistant", "content": "b"}]}) + "\n")  # fmt: skip
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.txt").write_text("")
    base = [f"teacher={lm_teacher}", "method=lm_kd", *SMALL, f"runs_dir={tmp_path / 'runs'}", "name=bad"]
    cases = [
        ([f"student={{name: hf, config: teacher, n_layer: 1, tokenizer: hf:{other}}}"],
         ["another tokenizer", "method.divergence=forward_kl", "uld", "hybrid"]),
        ([STUDENT, "data.max_length=64"], ["data.max_length=64", "48 positions"]),
        (["student={name: hf, config: teacher, n_layer: 1, n_positions: 16}"], ["16 positions", "student"]),
        ([STUDENT, "data=lm_files", f"data.train={tmp_path / 'empty'}"], ["holds no sequence", "empty"]),
        ([STUDENT, "data=lm_files", f"data.train={chat}"], ["chat template"]),
        ([STUDENT, "method.lmbda=1.5"], ["method.lmbda must lie in [0, 1]; got 1.5"]),
        ([STUDENT, "method.beta=-0.1"], ["method.beta must lie in [0, 1]; got -0.1"]),
        ([STUDENT, "method.mode=on_policy"], ["data.prompt_length"]),
        ([STUDENT, "method=kd"], ["'kd' serves", "lm_kd"]),
        (["student=resnet8"], ["not a language model"]),
        ([STUDENT, "data.micro_batch_size=0"], ["data.micro_batch_size must be a positive integer"]),
    ]  # fmt: skip
    for extra, needles in cases:
        code, _, err = run(capsys, "distill", *base, *extra)
        one_paragraph(code, err, *needles)
    assert not (tmp_path / "runs").exists()
