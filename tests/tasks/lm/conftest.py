"""Language-model jobs on the standard library's source: a tiny GPT-2 teacher trained once per session (a kdlab run
folder with its tokenizer), small data options, and helpers for the CLI."""

import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

SMALL = ["data=stdlib", "data.vocab_size=512", "data.max_length=32", "data.batch_size=8", "data.eval_batch_size=32",
         "data.train_size=48", "data.test_size=24", "epochs=1", "optim.name=adamw", "optim.lr=3e-3", "device=cpu",
         "--quiet"]  # fmt: skip
STUDENT = "student={name: hf, config: teacher, n_layer: 1}"
TEACHER_SPEC = {"name": "hf", "config": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 48}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    from kdlab.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def summary(folder) -> dict:
    return json.loads((folder / "summary.json").read_text())


def one_paragraph(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.startswith("kdlab: error: ") and "Traceback" not in err and err.strip().count("\n") == 0, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture(scope="session")
def lm_teacher(tmp_path_factory) -> str:
    """A 2-block, 32-wide GPT-2 trained for one epoch on 192 stdlib sequences of 32 tokens (its run folder)."""
    from kdlab.pipeline.config import resolve
    from kdlab.pipeline.dispatch import run as run_job

    runs = tmp_path_factory.mktemp("lm-teacher")
    config = resolve({"name": "teacher", "runs_dir": str(runs), "student": dict(TEACHER_SPEC),
                      "data": {"name": "stdlib", "vocab_size": 512, "max_length": 32, "batch_size": 16,
                               "train_size": 192, "test_size": 32},
                      "method": "ce", "optim": {"name": "adamw", "lr": 3e-3}, "epochs": 1,
                      "device": "cpu"})  # fmt: skip
    run_job(config, "train", progress=False)
    return str(runs / "teacher")
