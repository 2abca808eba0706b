"""The structural study's verdicts follow the numbers (fake results), and its settings are well formed."""

from kdlab.studies.structural import PRESETS, _settings, slug
from kdlab.studies.structural_report import table, verdicts


def row(label, values, name="token_kd", **method):
    stat = {"values": values}
    return {"label": label, "method": {"name": name, **method}, "case": "1a", "accuracy": stat,
            "agreement": stat, "sentence_agreement": stat, "kl": {"values": []}, "wall_time_s": 1.0}  # fmt: skip


def result(struct, others, name="pos-crf", teacher=0.9):
    rows = [row("w/o KD", [0.80, 0.80], "ce"), *others,
            row("Structural KD (local τ)", struct, "structural_kd", teacher_temperature="local"),
            row("Structural KD (global τ)", [0.81, 0.81], "structural_kd", teacher_temperature="global")]  # fmt: skip
    return {"name": name, "title": "t", "metric": "accuracy", "rows": rows, "teacher": {"accuracy": teacher}}


def test_structural_kd_best_holds_and_a_clear_loss_does_not():
    good = verdicts(result([0.85, 0.86], [row("Token KD", [0.84, 0.84])]))
    assert good[0].endswith("— vs w/o KD +5.50 pt; vs Token KD +1.50 pt.") and "held" in good[0]
    assert "did not hold" not in " ".join(good)
    bad = verdicts(result([0.82, 0.82], [row("Token KD", [0.84, 0.84])]))
    assert "did not hold" in bad[0] and "vs Token KD -2.00 pt" in bad[0]


def test_ties_within_a_third_of_a_point_count_as_held_and_a_difference_inside_the_spread_is_not_conclusive():
    tie = verdicts(result([0.838, 0.838], [row("Token KD", [0.84, 0.84])]))
    assert "held" in tie[0] and "did not hold" not in tie[0]
    spread = verdicts(result([0.80, 0.90], [row("Token KD", [0.84, 0.84])]))
    assert "inside the seed spread" in spread[0]
    # 85.0 ± 7.1 against Token KD's 84.0: 1.3 points above the tie threshold, well inside the seed spread
    assert "baseline (ties ±0.3 pt)**: not conclusive (the difference's distance from the threshold" in spread[0]


def test_below_no_kd_and_case_3_against_the_teacher():
    below = verdicts(result([0.85, 0.85], [row("Token KD", [0.70, 0.70])]))
    assert "every KD variant ≥ w/o KD (ties ±0.3 pt)**: did not hold (below: Token KD)" in below[1]
    case3 = verdicts(result([0.91, 0.91], [], name="pos-case3", teacher=0.90))
    assert any("reaches or beats its teacher" in v and "held" in v for v in case3)
    assert "teacher" in table(result([0.9], []))


def test_every_setting_names_distinct_conditions_for_every_preset():
    for scale in PRESETS.values():
        for setting in _settings(scale):
            slugs = [slug(label) for label, _ in setting["methods"]]
            assert len(set(slugs)) == len(slugs)
            assert setting["data"]["name"] in ("turkish_pos", "turkish_deps", "hironsan_ner")
