"""kdlab analyze end to end on tiny synthetic runs, and the report in a real headless browser."""

import json
import re
import shutil
import subprocess

import pytest

from kdlab.cli import main

SMALL = ["data=synthetic", "student.width=4", "epochs=1", "--quiet"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_teacher):
    root = tmp_path_factory.mktemp("analyze")
    common = [f"teacher={synthetic_teacher}", *SMALL, f"runs_dir={root}"]
    assert main(["distill", *common, "seeds=0,1", "independent=true", "name=kd"]) == 0
    assert main(["distill", *common, "method=fitnets", "independent=false", "name=hint"]) == 0
    return root


@pytest.fixture(scope="module")
def report(runs):
    out = runs / "analysis"
    assert main(["analyze", str(runs / "kd"), str(runs / "hint"), "--out", str(out), "--images", "120"]) == 0
    return out


def test_results_hold_every_analysis_with_numbers_in_range(report):
    results = json.loads((report / "results.json").read_text())
    students = {"kd seed0", "kd seed1", "fitnets seed0"}
    assert set(results["models"]) == students | {"ind seed0", "ind seed1"}
    loc = results["localisation"]
    assert set(loc["pairs"]) == students and loc["references"] == ["ind seed0", "ind seed1"]
    assert all(0 <= v <= 100 for row in loc["pairs"].values() for v in row.values())
    assert set(loc["methods"]) == {"kd", "fitnets"} and loc["methods"]["kd"]["pairs"] == 4
    assert loc["control"]["mean"] == pytest.approx(50.0) and loc["control"]["pairs"] == 2  # Ind vs Ind′ and back
    diagnosis = loc["diagnosis"]["measures"]
    assert list(diagnosis) == ["cosine", "cosine, layer resolution", "Pearson"]
    assert diagnosis["cosine"]["control_pairs"] == loc["control_pairs"]  # the statistic itself
    adv = results["adversarial"]
    assert 0 < adv["epsilon"] < 0.5 and abs(adv["teacher_attack"]["attacked"] - 85) < 10
    assert all(0 <= adv["teacher_attack"][m] <= 100 for m in results["models"])
    assert "ind seed1" not in adv["control_attack"]  # the control attack is crafted on Ind′ itself
    for curves in results["invariance"].values():
        assert len(curves["teacher"]) == len(curves["strengths"]) == 4
    assert all(0 <= v["iou"] <= 1 for v in results["boundaries"].values())
    matrix = results["cka"]["kd seed0"]["matrix"]
    assert len(matrix) == 3 and all(0 <= v <= 1 + 1e-9 for row in matrix for v in row)


def test_every_analysis_compares_each_student_with_each_independent_student_against_the_control(report):
    results = json.loads((report / "results.json").read_text())
    adv = results["adversarial"]
    blocks = [adv["transfer"], *results["invariance_transfer"].values(), results["boundary_transfer"]["test"],
              results["cka_transfer"]]  # fmt: skip
    for block in blocks:
        assert block["references"] == ["ind seed0", "ind seed1"] and block["control"]["pairs"] == 2
        assert block["control"]["mean"] == pytest.approx(0.0, abs=1e-9)  # a difference and its reverse
        assert {"kd", "fitnets"} <= set(block["methods"]) and block["methods"]["kd"]["pairs"] == 4
        assert all(e["low"] <= e["mean"] <= e["high"] for e in block["methods"].values())
    assert adv["transfer"]["units"] == adv["teacher_attack"]["n"]  # the images that fooled the teacher
    kd0 = adv["teacher_attack"]["kd seed0"] - adv["teacher_attack"]["ind seed1"]
    assert adv["transfer"]["pairs"]["kd seed0"]["ind seed1"] == pytest.approx(kd0)
    assert adv["control_transfer"]["references"] == ["ind seed0"] and "control" not in adv["control_transfer"]
    assert set(results["invariance_transfer"]["jitter"]["methods"]) == {"teacher", "kd", "fitnets"}
    assert results["boundary_transfer"]["test"]["units"] == 50  # triplets
    assert results["cka_transfer"]["units"] == 1 and results["cka_transfer"]["bootstrap"]["resampled"] == "model seeds"
    last = results["cka"]["kd seed1"]["matrix"][-1][-1] - results["cka"]["ind seed0"]["matrix"][-1][-1]
    assert results["cka_transfer"]["pairs"]["kd seed1"]["ind seed0"] == pytest.approx(100 * last)


def test_the_report_embeds_every_figure(report):
    page, md = (report / "report.html").read_text(), (report / "report.md").read_text()
    figures = sorted(p.name for p in report.glob("*.png"))
    assert figures == ["boundaries.png", "cka.png", "fooling.png", "gradcam.png", "invariance.png"]
    assert page.count("data:image/png;base64,") == len(figures) and all(f"]({f})" in md for f in figures)


def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_the_report_renders_in_a_headless_browser_with_every_figure_and_no_script_error(report):
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium; it could not be installed here)")
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", (report / "report.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None, dom[:500]
    assert 'data-figures="5/5"' in body.group(0) and "data-errors" not in body.group(0)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--images", "2"], "at least 3"),
        (["nowhere"], "neither a finished run folder"),
    ],
)
def test_mistakes_are_one_paragraph_errors(capsys, runs, args, needle):
    paths = [str(runs / "kd")] if args[0].startswith("--") else [str(runs / args[0])]
    options = args if args[0].startswith("--") else []
    assert main(["analyze", *paths, *options]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_students_of_different_teachers_and_no_independent_student_are_refused(capsys, runs, tmp_path):
    assert main(["analyze", str(runs / "hint")]) == 2
    assert "independent student" in capsys.readouterr().err
    other = tmp_path / "other"
    assert (
        main(["train", "data=synthetic", "student.width=4", "epochs=1", "--quiet", f"runs_dir={tmp_path}", "name=t2"])
        == 0
    )
    assert (
        main(
            ["distill", f"teacher={tmp_path / 't2'}", *SMALL, f"runs_dir={tmp_path}", "name=other", "independent=false"]
        )
        == 0
    )
    assert main(["analyze", str(runs / "kd"), str(other)]) == 2
    assert "2 teachers" in capsys.readouterr().err


def test_analyze_needs_runs_or_a_known_preset(capsys):
    assert main(["analyze"]) == 2
    assert "needs run folders" in capsys.readouterr().err
    assert main(["analyze", "--preset", "imagenet"]) == 2
    assert "valid presets: mnist-domains" in capsys.readouterr().err
