"""The fidelity study: verdicts follow the numbers, the report is complete, a second run reuses the first."""

import json
from pathlib import Path

import pytest

from kdlab.cli import main
from kdlab.core.errors import ConfigError
from kdlab.studies import fidelity
from kdlab.studies.runner import StudyContext


def run(seed: int, agreement: float, accuracy: float = 0.8, train: float | None = None, views: float | None = None):
    student = {
        "test": {"accuracy": accuracy, "agreement": agreement, "kl": 0.1, "ece": 0.02},
        "train": {"agreement": agreement if train is None else train},
    }
    if views is not None:
        student["train_views"] = {"agreement": views}
    return {"seed": seed, "student": student, "teacher": {"test": {"accuracy": 0.85}}}


class FakeContext(StudyContext):
    """Hands back prepared summaries instead of training: the verdicts must follow them."""

    def __init__(self, folder: Path, results: dict[tuple[str, str], dict]):
        super().__init__(folder, {}, progress=False)
        self.results, self.asked = results, []

    def teachers(self, name, settings, seeds):
        return [self.folder / f"{name}-{s}" for s in seeds]

    def distill(self, experiment, condition, settings):
        self.asked.append((experiment, condition))
        return self.results[(experiment, condition)]


def fake(tmp_path, results):
    tmp_path.mkdir(exist_ok=True)
    return FakeContext(tmp_path, results)


@pytest.mark.parametrize(("tau1", "tau4", "word"), [(0.80, 0.85, "held"), (0.86, 0.84, "did not hold")])
def test_the_temperature_verdict_follows_the_measurements(tmp_path, tau1, tau4, word):
    results = {
        ("temperature", "tau1"): {"main": [run(0, tau1), run(1, tau1)]},
        ("ensemble", "m1"): {"main": [run(0, tau4), run(1, tau4)]},
    }
    outcome = fidelity.temperature(fake(tmp_path, results), fidelity.PRESETS["smoke"])
    claim = outcome.section.paragraphs[0]
    assert f"— {word}:" in claim and f"{100 * (tau4 - tau1):+.2f} points" in claim
    assert outcome.numbers["held"] == (word == "held")
    assert (tmp_path / "temperature.png").is_file()


def test_the_augmentation_verdicts_use_the_views_the_student_was_distilled_on(tmp_path):
    results = {("ensemble", "m1"): {"main": [run(0, 0.90), run(1, 0.90)]}}
    for policy, test, views in [
        ("baseline", 0.88, 0.95),
        ("combined", 0.89, 0.70),
        ("mixup", 0.91, 0.80),
        ("noise", 0.80, 0.85),
        ("ood", 0.82, 0.86),
    ]:
        results[("augmentation", policy)] = {"main": [run(0, test, views=views), run(1, test, views=views)]}
    text = " ".join(fidelity.augmentation(fake(tmp_path, results), fidelity.PRESETS["smoke"]).section.paragraphs)
    assert "mixup raises test agreement slightly over the baseline — held" in text
    assert "substantially — held: view agreement 70.00 ± 0.00 % (combined) vs 95.00 ± 0.00 % (baseline)" in text
    assert "worst distillation data — held" in text


def test_the_optimisation_verdicts(tmp_path):
    results = {
        ("optimization", "sgd"): {"main": [run(0, 0.9, train=0.90)]},
        ("optimization", "adam"): {"main": [run(0, 0.9, train=0.93)]},
        ("optimization", "sgd_long"): {"main": [run(0, 0.9, train=0.95)]},
    }
    text = " ".join(fidelity.optimization(fake(tmp_path, results), fidelity.PRESETS["smoke"]).section.paragraphs)
    assert "Adam reaches no better train agreement than SGD — did not hold: 93.00" in text
    assert "longer training raises train agreement, slowly — held: 95.00" in text


def test_a_real_experiment_writes_a_complete_report_and_a_second_run_reuses_its_runs(tmp_path):
    folder = fidelity.run_study("smoke", tmp_path / "study", only=["temperature"], progress=False)
    md, page = (folder / "report.md").read_text(), (folder / "report.html").read_text()
    results = json.loads((folder / "results.json").read_text())
    assert "E4/E11 — temperature" in md and any(f"— {v}" in md for v in ("held", "did not hold", "not conclusive"))
    assert page.count("data:image/png;base64,") == 1 and "<table>" in page
    tau4 = results["experiments"]["temperature"]["tau4"]["test_agreement"]["values"]
    assert len(tau4) == 2 and all(0.0 <= v <= 1.0 for v in tau4)
    finished = sorted(p.stat().st_mtime_ns for p in (folder / "runs").rglob("model.pt"))
    fidelity.run_study("smoke", tmp_path / "study", only=["temperature"], progress=False)
    assert sorted(p.stat().st_mtime_ns for p in (folder / "runs").rglob("model.pt")) == finished
    again = json.loads((folder / "results.json").read_text())["experiments"]["temperature"]["tau4"]
    assert again["test_agreement"]["values"] == tau4


def test_unknown_presets_and_experiments_are_one_paragraph_errors(capsys, tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'quick'"):
        fidelity.run_study("quik", tmp_path)
    assert main(["study", "fidelity", "smoke", "--only", "temprature", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'temperature'" in err and "Valid experiments: easy, ensemble" in err


def test_a_difference_inside_the_seed_spread_is_flagged():
    from kdlab.studies.runner import Stat

    assert fidelity.word(True, Stat([0.90, 0.92]), Stat([0.80, 0.81])) == "held"
    assert "not conclusive" in fidelity.word(True, Stat([0.90, 0.80]), Stat([0.84, 0.85]))
    assert fidelity.word(False) == "did not hold"
    # a claim with a threshold ("within 0.5 point of b"): the distance to the threshold decides, not to zero
    within, full = Stat([0.897, 0.901]), Stat([0.90, 0.90])
    assert fidelity.word(True, within, full, boundary=-0.005) == "held"
    assert fidelity.word(True, within, full).startswith("not conclusive (the difference, 0.001,")
    assert "distance from the threshold -0.005, 0.002" in fidelity.word(True, Stat([0.895, 0.899]), full, -0.005)


def test_merge_is_deep_and_the_override_wins():
    from kdlab.studies.runner import merge

    base = {"data": {"name": "fashion_mnist", "train_size": 10}, "epochs": 3}
    assert merge(base, {"data": {"augment": "mixup"}, "epochs": 5}) == {
        "data": {"name": "fashion_mnist", "train_size": 10, "augment": "mixup"},
        "epochs": 5,
    }
    assert base["data"] == {"name": "fashion_mnist", "train_size": 10}
