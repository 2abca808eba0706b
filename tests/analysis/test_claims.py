from kdlab.analysis import claims

MODELS = {"kd seed0": "kd", "kd seed1": "kd", "fitnets seed0": "fitnets", "ind seed0": "ce", "ind seed1": "ce"}


def estimate(low: float, high: float, ties: float = 0.0, pairs: int = 4) -> dict:
    return {"mean": (low + high) / 2, "std": 2.0, "low": low, "high": high, "pairs": pairs, "ties": int(ties)}


def localisation(control=(46.0, 54.0), **methods) -> dict:
    students = {"kd seed0", "kd seed1", "fitnets seed0"}
    return {"images": 100, "references": ["ind seed0", "ind seed1"],
            "pairs": {n: {"ind seed0": 50.0, "ind seed1": 50.0} for n in students},
            "methods": {m: estimate(*v) for m, v in methods.items()},
            "control": estimate(*control, pairs=2), "control_pairs": {"ind seed0 vs ind seed1": 47.0,
                                                                     "ind seed1 vs ind seed0": 53.0},
            "bootstrap": {"rounds": 100, "confidence": 0.95, "resampled": "images and model seeds"}}  # fmt: skip


def results(**overrides):
    base = {
        "models": MODELS,
        "localisation": localisation(kd=(60.0, 64.0, 2.0), fitnets=(45.0, 60.0, 0.0)),
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
    assert "on more than 55 % of images — held. Win rates" in text
    assert "kd 62.00 ± 2.00 [60.00, 64.00] % (held), fitnets 52.50 ± 2.00 [45.00, 60.00] % (not conclusive)" in text
    assert "control (independent students against each other, 2 ordered pairs) 50.00 ± 2.00 [46.00, 54.00] %" in text
    assert "its pairs ranging 47.00–53.00 %. Ties, counted half: 2 of 800 per-image comparisons. Rule — held:" in text
    assert "independent ones — held: Ind 51.00 %, kd 61.00 ± 1.41 % (+10.00), fitnets 70.00 % (+19.00)" in text
    assert "(|Δ| ≤ 2 points) — held" in text
    assert "— held." in claims.localisation(results(localisation=localisation(kd=(56.0, 58.0))))
    short = localisation(kd=(54.5, 54.9))  # above the control's interval, but wholly below the paper's 55 %
    assert "— did not hold." in claims.localisation(results(localisation=short))
    assert "— not conclusive." in claims.localisation(results(localisation=localisation(kd=(52.0, 60.0))))
    assert "— did not hold." in claims.localisation(results(localisation=localisation(kd=(30.0, 40.0))))
    one = {k: v for k, v in localisation(kd=(60.0, 64.0)).items() if k != "control"}
    assert "needs at least two independent students" in claims.localisation(results(localisation=one))


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
