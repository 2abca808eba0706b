"""The one comparison behind every what-transferred figure: pair values equal their plain formula, the control over
independent students is centred by construction, identical models give a degenerate interval, a student built to be
closer is "held" and exchangeable ones are "not conclusive"."""

import pytest
import torch

from kdlab.analysis.comparison import compare, difference, verdicts, win_rates


def test_pair_values_are_the_mean_per_unit_difference_and_the_control_is_centred():
    g = torch.Generator().manual_seed(0)
    units = {n: torch.rand(40, generator=g) for n in ("kd seed0", "kd seed1", "ind seed0", "ind seed1", "ind seed2")}
    methods = {"kd seed0": "kd", "kd seed1": "kd", "ind seed0": "ce", "ind seed1": "ce", "ind seed2": "ce"}
    refs = ["ind seed0", "ind seed1", "ind seed2"]
    block = compare(units, methods, refs, rounds=200)
    assert set(block["methods"]) == {"kd"}  # the references are not candidates
    expected = 100 * (units["kd seed1"] - units["ind seed2"]).double().mean()
    assert block["pairs"]["kd seed1"]["ind seed2"] == pytest.approx(float(expected))
    kd = block["methods"]["kd"]
    values = torch.tensor([v for row in block["pairs"].values() for v in row.values()], dtype=torch.float64)
    assert (
        kd["pairs"] == 6
        and kd["mean"] == pytest.approx(float(values.mean()))
        and kd["std"] == pytest.approx(float(values.std()))
    )
    assert kd["low"] <= kd["mean"] <= kd["high"]
    control = block["control"]
    assert control["pairs"] == 6 and control["mean"] == pytest.approx(0.0, abs=1e-9)  # a − b and b − a both in it
    assert sorted(block["control_pairs"]) == sorted(f"{a} vs {b}" for a in refs for b in refs if a != b)
    assert block["bootstrap"] == {"rounds": 200, "confidence": 0.95, "resampled": "images and model seeds"}
    wins = win_rates(units, methods, refs)
    assert wins["control"]["mean"] == pytest.approx(50.0)


def test_identical_models_give_a_degenerate_interval_and_every_unit_ties():
    same = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    units = {"kd seed0": same, "ind seed0": same.clone(), "ind seed1": same.clone()}
    block = compare(units, {"kd seed0": "kd"}, ["ind seed0", "ind seed1"], rounds=100)
    kd = block["methods"]["kd"]
    assert (kd["mean"], kd["std"], kd["low"], kd["high"], kd["ties"]) == (0.0, 0.0, 0.0, 0.0, 10)
    assert verdicts(block) == {"kd": "not conclusive"}
    assert compare(units, {"kd seed0": "kd"}, ["ind seed0"])["methods"]["kd"]["pairs"] == 1
    assert "control" not in compare(units, {"kd seed0": "kd"}, ["ind seed0"])  # one reference: no control
    assert verdicts(compare(units, {"kd seed0": "kd"}, ["ind seed0"])) == {"kd": "no control"}


def correct(p: float, n: int, seed: int) -> torch.Tensor:
    """Per-image correctness of a model right with probability ``p``."""
    return torch.rand(n, generator=torch.Generator().manual_seed(seed)) < p


def test_a_student_built_to_be_better_holds_and_exchangeable_ones_are_not_conclusive():
    n = 2000
    units = {f"ind seed{i}": correct(0.6, n, i) for i in range(3)}
    units |= {f"better seed{i}": correct(0.8, n, 10 + i) for i in range(3)}
    units |= {f"alike seed{i}": correct(0.6, n, 20 + i) for i in range(3)}
    units |= {f"worse seed{i}": correct(0.4, n, 30 + i) for i in range(3)}
    methods = {name: name.split()[0] for name in units}
    block = compare(units, methods, [f"ind seed{i}" for i in range(3)], rounds=300)
    assert verdicts(block) == {"better": "held", "alike": "not conclusive", "worse": "did not hold"}
    assert verdicts(block, higher=False)["worse"] == "held"
    assert block["methods"]["better"]["mean"] == pytest.approx(20.0, abs=3.0)


def test_one_number_per_model_resamples_the_seeds_only():
    units = {"kd seed0": torch.tensor([0.9]), "kd seed1": torch.tensor([0.7]), "ind seed0": torch.tensor([0.5]),
             "ind seed1": torch.tensor([0.6])}  # fmt: skip
    block = compare(units, {"kd seed0": "kd", "kd seed1": "kd"}, ["ind seed0", "ind seed1"], resampled="model seeds")
    kd = block["methods"]["kd"]
    assert kd["mean"] == pytest.approx(25.0) and kd["ties"] == 0 and block["units"] == 1
    assert 10.0 - 1e-4 <= kd["low"] < kd["high"] <= 40.0 + 1e-4  # between the smallest and largest pair difference
    assert torch.equal(
        difference(torch.tensor([True]), torch.tensor([False])), torch.tensor([1.0], dtype=torch.float64)
    )
