"""Helpers of the language-model job tests: small data options, the student, the CLI, one-paragraph errors."""

import json

SMALL = ["data=stdlib", "data.vocab_size=512", "data.max_length=32", "data.batch_size=8", "data.eval_batch_size=32",
         "data.train_size=48", "data.test_size=24", "epochs=1", "optim.name=adamw", "optim.lr=3e-3", "device=cpu",
         "--quiet"]  # fmt: skip
STUDENT = "student={name: hf, config: teacher, n_layer: 1}"


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
