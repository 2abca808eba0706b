import json

import pytest
import torch

from kdlab.cli import main
from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.methods import MethodContext, build_method, method_params, params_mapping
from kdlab.models import MODELS
from kdlab.pipeline.config import load
from kdlab.training.teachers import Teacher

SMALL = ["data=synthetic", "data.val_fraction=0.25", "student.width=4", "epochs=1", "--quiet"]


def test_compare_writes_table_json_markdown_and_chart(capsys, synthetic_teacher, tmp_path):
    code = main(
        [
            "compare",
            f"teacher={synthetic_teacher}",
            *SMALL,
            "methods=kd,kd+ce",
            "seeds=0,1",
            f"runs_dir={tmp_path}",
            "name=cmp",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    for row in ("teacher", "kd", "kd+ce", "independent (ce)", "s/epoch", "±"):
        assert row in out
    folder = tmp_path / "cmp"
    record = json.loads((folder / "compare.json").read_text())
    assert list(record["methods"]) == ["kd", "kd+ce", "independent"]
    kd = record["methods"]["kd"]
    assert kd["seeds"] == [0, 1] and kd["test"]["agreement"]["n"] == 2 and kd["seconds_per_epoch"]["mean"] > 0
    assert record["teacher"]["test"]["accuracy"] > 0.25
    assert "| independent (ce) |" in (folder / "compare.md").read_text()
    assert (folder / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [
        "independent-seed0",
        "independent-seed1",
        "kd+ce-seed0",
        "kd+ce-seed1",
        "kd-seed0",
        "kd-seed1",
    ]


def test_compare_rejects_unknown_and_repeated_methods(capsys, synthetic_teacher, tmp_path):
    assert main(["compare", f"teacher={synthetic_teacher}", *SMALL, "methods=kd,kdd", f"runs_dir={tmp_path}"]) == 2
    assert "Unknown method 'kdd'" in capsys.readouterr().err
    assert main(["compare", f"teacher={synthetic_teacher}", *SMALL, "methods=kd,kd", f"runs_dir={tmp_path}"]) == 2
    assert "twice" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_combined_method_sums_terms_and_counts_labels_once():
    torch.manual_seed(0)
    student = MODELS.get("cnn")(num_classes=4, in_channels=1, width=4)
    teacher = Teacher(MODELS.get("cnn")(num_classes=4, in_channels=1, width=4))
    ctx = MethodContext(student, teacher, 4, input_shape=(1, 8, 8))
    combined = build_method("kd+ce", {"kd": {"ce_weight": 0.5}}, ctx)
    kd = build_method("kd", {"ce_weight": 0.5}, ctx)
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 4, (6,))
    batch, s, t = Batch(x=x, y=y, index=torch.arange(6)), ModelOutput(student(x)), teacher(x)
    terms = combined(s, t, batch)
    assert set(terms) == {"kd", "ce"}  # the second method's ce is not counted again
    assert all(torch.equal(terms[k], v) for k, v in kd(s, t, batch).items())
    assert combined.needs_teacher and params_mapping(combined.params)["kd"]["ce_weight"] == 0.5


def test_combined_method_options_live_under_each_part():
    params = method_params("kd+ce", {"kd": {"temperature": 2}, "ce": {"label_smoothing": 0.1}})
    assert params["kd"].temperature == 2.0 and params["ce"].label_smoothing == 0.1
    with pytest.raises(ConfigError, match="give each part's options under its name"):
        method_params("kd+ce", {"temperature": 2})
    config = load(None, ["method=kd+ce", "method.kd.temperature=3"])
    assert method_params(config.method.name, config.method.params)["kd"].temperature == 3.0
