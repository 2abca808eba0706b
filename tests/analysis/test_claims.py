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


def block(control=(-2.0, 2.0), **methods) -> dict:
    """A comparison block (differences in points) with the given methods' intervals."""
    return {"units": 100, "references": ["ind seed0", "ind seed1"], "methods": {m: estimate(*v) for m, v in
            methods.items()}, "control": estimate(*control, pairs=2), "bootstrap": {"rounds": 100, "confidence": 0.95,
            "resampled": "images and model seeds"}}  # fmt: skip


def results(**overrides):
    base = {
        "models": MODELS,
        "localisation": localisation(kd=(60.0, 64.0, 2.0), fitnets=(45.0, 60.0, 0.0)),
        "adversarial": {
            "epsilon": 0.05,
            "images": 500,
            "teacher_attack": {"attacked": 85.0, "n": 425, "ind seed0": 50, "ind seed1": 52},
            "transfer": block(kd=(6.0, 12.0), fitnets=(-1.0, 8.0)),
            "control_transfer": block(kd=(-3.0, 3.0), fitnets=(-4.0, 1.0)),
        },
        "boundary_transfer": {"test": block(kd=(1.0, 3.0), fitnets=(-5.0, 1.0))},
        "invariance_transfer": {"jitter": block(teacher=(5.0, 9.0), kd=(3.0, 4.0), fitnets=(-1.0, 1.0))},
        "cka_transfer": block(kd=(3.0, 5.0), fitnets=(-6.0, -3.0)),
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
    assert "— held." in claims.localisation(results(localisation=localisation(kd=(56.0, 58.0))))
    short = localisation(kd=(54.5, 54.9))  # above the control's interval, but wholly below the paper's 55 %
    assert "— did not hold." in claims.localisation(results(localisation=short))
    assert "— not conclusive." in claims.localisation(results(localisation=localisation(kd=(52.0, 60.0))))
    assert "— did not hold." in claims.localisation(results(localisation=localisation(kd=(30.0, 40.0))))
    one = {k: v for k, v in localisation(kd=(60.0, 64.0)).items() if k != "control"}
    assert "needs at least two independent students" in claims.localisation(results(localisation=one))


def test_fooling_transfer_is_judged_per_method_against_the_control_and_checked_on_an_unrelated_attack():
    text = claims.vulnerability(results())
    assert "more often than independent ones — held for 1 of 2 methods (kd)." in text
    assert "kd +9.00 ± 2.00 [+6.00, +12.00] (held), fitnets +3.50 ± 2.00 [-1.00, +8.00] (not conclusive)" in text
    assert "control (independent students against each other, 2 ordered pairs) +0.00 ± 2.00 [-2.00, +2.00]" in text
    assert "are fooled on 51.00 % of them" in text
    assert "than the other independent students — held:" in text  # nothing conclusive on the unrelated attack
    leaky = results()
    leaky["adversarial"]["control_transfer"] = block(kd=(3.0, 5.0), fitnets=(-4.0, 1.0))
    assert "than the other independent students — did not hold:" in claims.vulnerability(leaky)


def test_the_domain_claim_needs_held_gains_on_both_shifted_domains():
    gains = {"orig": block(kd=(-1.0, 1.0), fitnets=(-1.0, 1.0)), "color": block(kd=(4.0, 6.0), fitnets=(3.0, 8.0)),
             "texture": block(kd=(3.0, 5.0), fitnets=(2.5, 4.0))}  # fmt: skip
    assert "— held for every method." in claims.domains(results(domain_transfer=gains))
    gains["texture"] = block(kd=(3.0, 5.0), fitnets=(1.0, 4.0))  # fitnets overlaps the control on texture
    text = claims.domains(results(domain_transfer=gains))
    assert "— held for 1 of 2 methods (kd)." in text and "texture: kd +4.00" in text
    assert claims.domains(results()) == ""  # no domains data set, no paragraph


def test_boundaries_and_representations_list_every_method_with_its_verdict():
    bounds = claims.boundaries(results())
    assert "test: kd +2.00 ± 2.00 [+1.00, +3.00] (not conclusive), fitnets -2.00" in bounds  # touches the control
    cka = claims.representations(results())
    assert "— held for 1 of 2 methods (kd)" in cka and "fitnets -4.50 ± 2.00 [-6.00, -3.00] (did not hold)" in cka


def test_invariance_inheritance_needs_a_teacher_more_invariant_than_ind():
    text = claims.invariance(results())
    assert "— held for 1 of 2 methods (kd)." in text and "teacher +7.00" in text
    weak = results(invariance_transfer={"jitter": block(teacher=(-1.0, 3.0), kd=(3.0, 4.0))})
    assert "not testable here: the teacher is not more invariant than the independent students (not conclusive)" in (
        claims.invariance(weak)
    )
