"""The EKD study: verdicts follow the numbers, and the smoke preset runs every condition end to end."""

import json

import pytest

from kdlab.cli import main
from kdlab.studies.ekd_report import verdicts


def _runs(accuracy: float, spread: float = 0.002, full_bn: float | None = None) -> list[dict]:
    out = []
    for delta in (-spread, 0.0, spread):
        run = {"accuracy": accuracy + delta}
        if full_bn is not None:
            run["accuracy_full_bn"] = full_bn
        out.append(run)
    return out


def _figures(ekd_sub: float, ekd_full: float) -> dict:
    return {
        "alone": {8: _runs(0.85), 20: _runs(0.90)},
        "joint_ce": {8: _runs(0.84, full_bn=0.5), 20: _runs(0.90)},
        "joint_kl": {8: _runs(0.85, full_bn=0.5), 20: _runs(0.90)},
        "ekd": {8: _runs(ekd_sub, full_bn=0.6), 20: _runs(ekd_full)},
        "offline_kd": {8: _runs(0.86)},
    }


def test_verdicts_follow_the_numbers():
    text, numbers = verdicts(_figures(ekd_sub=0.87, ekd_full=0.899), {"ekd": {"8": 0.0, "20": 0.0}})
    assert "at least as good" in text[0] and ": held" in text[0]
    assert ": held" in text[1] and numbers["full_vs_alone"] == pytest.approx(-0.001)
    assert numbers["ekd_vs_joint_ce"][8] == pytest.approx(0.03)
    assert numbers["recalibration_gain"][8] == pytest.approx(0.27)
    text, numbers = verdicts(_figures(ekd_sub=0.83, ekd_full=0.88), {"ekd": {"8": 0.01}})
    assert "did not hold" in text[0] and "did not hold" in text[1] and "did not hold" in text[2]
    assert numbers["switch_max_accuracy_difference"] == 0.01 and "1.00 pt" in text[-1]


def test_the_smoke_preset_runs_every_condition_and_a_second_call_reuses_them(tmp_path):
    out = tmp_path / "ekd"
    assert main(["study", "ekd", "smoke", "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["figures"]) == {"alone", "joint_ce", "joint_kl", "ekd", "ekd_sad", "ekd_at50", "offline_kd"}
    assert set(results["figures"]["ekd"]) == {"8", "14"} and set(results["figures"]["offline_kd"]) == {"8"}
    assert all(v == 0.0 for check in results["checks"].values() for v in check.values())
    report = (out / "report.md").read_text()
    assert "(e) offline KD" in report and (out / "accuracy_vs_macs.png").stat().st_size > 1000
    first = (out / "runs" / "joint" / "ekd" / "summary.json").stat().st_mtime_ns
    assert main(["study", "ekd", "smoke", "--out", str(out), "--quiet"]) == 0
    assert (out / "runs" / "joint" / "ekd" / "summary.json").stat().st_mtime_ns == first
    assert main(["study", "ekd", "tiny", "--out", str(out)]) == 2
