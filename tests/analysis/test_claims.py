from kdlab.analysis import claims

MODELS = {"kd seed0": "kd", "kd seed1": "kd", "fitnets seed0": "fitnets", "ind seed0": "ce", "ind seed1": "ce"}


def results(**overrides):
    base = {
        "models": MODELS,
        "localisation": {"win_rate": {"kd seed0": 60.0, "kd seed1": 64.0, "fitnets seed0": 52.0}, "control": 49.0},
        "adversarial": {
            "epsilon": 0.05,
            "teacher_attack": {
                "attacked": 85.0,
                "n": 85,
                "kd seed0": 60,
                "kd seed1": 62,
                "fitnets seed0": 70,
                "ind seed0": 50,
                "ind seed1": 52,
            },
            "control_attack": {
                "attacked": 80.0,
                "n": 80,
                "kd seed0": 40,
                "kd seed1": 41,
                "fitnets seed0": 39,
                "ind seed0": 40,
            },
        },
        "boundaries": {m: {"iou": 0.5, "std": 0.1} for m in MODELS},
        "invariance": {"jitter": {"strengths": [0.3, 0.6], "teacher": [90, 80], **{m: [70, 60] for m in MODELS}}},
    }
    return base | overrides


def test_labels_group_by_method_with_the_control_marks():
    assert [claims.method_of(x) for x in ("kd seed1", "ind seed0′", "fitnets seed12")] == ["kd", "ind", "fitnets"]


def test_the_verdicts_follow_the_numbers():
    text = " ".join(claims.paragraphs(results()))
    assert "50 ± 3 % — held: win rates kd 62.00 ± 2.83 %" in text
    assert "independent ones — held: Ind 51.00 %, kd 61.00 ± 1.41 % (+10.00), fitnets 70.00 % (+19.00)" in text
    assert "(|Δ| ≤ 2 points) — held" in text
    bad = results(localisation={"win_rate": {"kd seed0": 60.0}, "control": 58.0})
    assert "— did not hold: win rates" in claims.localisation(bad)


def test_the_domain_claim_needs_gains_on_both_shifted_domains_and_none_on_orig():
    def row(kd_color: float) -> dict:
        cells = {m: {"accuracy": 90.0, "consensus": 80.0} for m in MODELS}
        return {"teacher": {"accuracy": 95.0}, **cells}

    domains = {"orig": row(0), "color": row(0), "texture": row(0)}
    for m in ("kd seed0", "kd seed1", "fitnets seed0"):
        domains["color"][m] = {"accuracy": 95.0, "consensus": 90.0}
        domains["texture"][m] = {"accuracy": 93.0, "consensus": 90.0}
    assert "— held for every method" in claims.domains(results(domains=domains))
    domains["texture"]["fitnets seed0"] = {"accuracy": 90.5, "consensus": 80.0}
    assert "— held for 1 of 2 methods" in claims.domains(results(domains=domains))


def test_invariance_inheritance_needs_a_teacher_more_invariant_than_ind():
    same = claims.invariance(results())  # students exactly as invariant as Ind, teacher more
    assert "— did not hold: teacher 85.00 %, Ind 65.00 %" in same
    better = results()
    better["invariance"]["jitter"]["kd seed0"] = [90, 80]
    assert "— held: teacher 85.00 %" in claims.invariance(better)
    weak = results(invariance={"jitter": {"strengths": [0.3], "teacher": [50], **{m: [70] for m in MODELS}}})
    assert "not testable here" in claims.invariance(weak)
