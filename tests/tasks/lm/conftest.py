"""Language-model jobs on the standard library's source: a tiny GPT-2 teacher trained once per session (a kdlab run
folder with its tokenizer), small data options, and helpers for the CLI."""


import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

TEACHER_SPEC = {"name": "hf", "config": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 48}


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
