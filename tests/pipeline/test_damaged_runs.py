"""``kdlab resume`` of a damaged run folder: a clear one-paragraph error (exit 2) naming the file and what to do —
or, for a damaged summary, a re-evaluation from the last checkpoint; never a traceback."""

import json
import shutil

import pytest
import torch

from kdlab.cli import main

SMALL = ["data=synthetic", "data.val_fraction=0.25", "student.width=4", "epochs=2", "independent=false", "--quiet"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, synthetic_teacher):
    root = tmp_path_factory.mktemp("damaged")
    assert main(["distill", f"teacher={synthetic_teacher}", *SMALL, f"runs_dir={root}", "name=run"]) == 0
    return root / "run"


@pytest.fixture
def run(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def resume(capsys, folder) -> tuple[int, str, str]:
    code = main(["resume", str(folder), "--quiet"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def one_paragraph(code: int, err: str, *needles: str) -> None:
    assert code == 2 and err.startswith("kdlab: error: ") and err.strip().count("\n") == 0, err
    for needle in needles:
        assert needle in err, err


def test_a_finished_run_says_so(capsys, run):
    code, out, err = resume(capsys, run)
    assert code == 0 and "had already finished; nothing was trained" in err and "kd student" in out


@pytest.mark.parametrize(
    ("name", "content", "needles"),
    [
        ("config.yaml", "data: {name: synthetic\nepochs: [", ("config.yaml (the run's configuration) is damaged",)),
        ("run.json", '{"command": "dist', ("run.json", "is damaged or truncated")),
        ("run.json", '{"created": 1}', ("does not name the command",)),
    ],
)
def test_truncated_run_files(capsys, run, name, content, needles):
    (run / name).write_text(content)
    one_paragraph(*resume(capsys, run)[::2], *needles)


def test_a_truncated_summary_is_rewritten_from_the_last_checkpoint(capsys, run):
    good = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text('{"student": {"test": {"accur')
    code, _, err = resume(capsys, run)
    assert code == 0, err
    again = json.loads((run / "summary.json").read_text())
    assert again["student"]["test"] == good["student"]["test"]  # nothing retrained: the same weights, evaluated


@pytest.mark.parametrize("damage", ["other_keys", "other_shapes", "not_a_state"])
def test_a_state_that_does_not_fit_the_run(capsys, run, damage):
    (run / "summary.json").unlink()  # unfinished: resume reads state.pt
    state = torch.load(run / "state.pt", weights_only=True)
    if damage == "other_keys":
        del state["optimizer"]
    elif damage == "other_shapes":
        key = next(k for k, v in state["student"].items() if v.dim() > 1)
        state["student"][key] = torch.zeros(3, 3)
    else:
        state = {"weights": torch.zeros(1)}
    torch.save(state, run / "state.pt")
    code, _, err = resume(capsys, run)
    needle = "does not fit this run" if damage == "other_shapes" else "is not a kdlab training state"
    one_paragraph(code, err, needle, "Delete it to train this run again from the start")
