"""The report's tables and the control diagnosis follow the numbers they are given."""

from kdlab.analysis.report import comparison_table, control_diagnosis


def block(**methods: tuple[float, float]) -> dict:
    def estimate(low: float, high: float, pairs: int = 4) -> dict:
        return {"mean": (low + high) / 2, "std": 2.0, "low": low, "high": high, "pairs": pairs, "ties": 0}

    pairs = {f"{m} seed{i}": {"ind seed0": low + i, "ind seed1": high - i} for m, (low, high) in methods.items()
             for i in range(2)}  # fmt: skip
    return {"methods": {m: estimate(*v) for m, v in methods.items()}, "control": estimate(-2.0, 2.0, 2),
            "pairs": pairs, "control_pairs": {"ind seed0 vs ind seed1": -1.5, "ind seed1 vs ind seed0": 1.5},
            "bootstrap": {"rounds": 100, "confidence": 0.95, "resampled": "images and model seeds"}}  # fmt: skip


def diagnosis(cosine: list[float], native: list[float], ties: int = 0) -> dict:
    pairs = ["ind seed0 vs ind seed1", "ind seed1 vs ind seed0", "ind seed0 vs ind seed2", "ind seed2 vs ind seed0"]
    measure = {"cosine": cosine, "cosine, layer resolution": native, "Pearson": cosine}
    return {"sampling_band": 3.1, "measures": {m: {"control_pairs": dict(zip(pairs, v, strict=True)),
                                                   "ties": ties} for m, v in measure.items()}}  # fmt: skip


def test_pairs_far_apart_that_keep_their_side_under_every_measure_are_the_seeds():
    text, (headers, rows) = control_diagnosis(diagnosis([30.0, 70.0, 60.0, 40.0], [33.0, 67.0, 58.0, 42.0]), 1000)
    assert "ties are 0 of 4,000 per-image comparisons" in text and "±3.1 points" in text
    assert "range 30.0–70.0 %, and 4 of 4 keep their side of 50 %" in text and "The cause: the seeds" in text
    assert headers == ["control pair (win rate %)", "cosine", "cosine, layer resolution", "Pearson"]
    assert rows[0] == ["ind seed0 vs ind seed1", "30.00", "33.00", "30.00"] and rows[-1] == ["ties", "0", "0", "0"]


def test_pairs_inside_the_sampling_band_or_that_flip_with_the_measure_are_not_settled():
    close = control_diagnosis(diagnosis([48.0, 52.0, 51.0, 49.0], [48.0, 52.0, 51.0, 49.0]), 1000)[0]
    assert "The cause: not settled by these numbers." in close
    flipped = control_diagnosis(diagnosis([30.0, 70.0, 60.0, 40.0], [60.0, 40.0, 30.0, 70.0]), 1000)[0]
    assert "0 of 4 keep their side" in flipped and "not settled" in flipped


def test_the_comparison_table_has_a_row_per_method_with_its_verdict_and_the_control_last():
    headers, rows = comparison_table(block(kd=(3.0, 5.0), hint=(-1.0, 1.0)), "accuracy minus Ind (points)")
    assert headers[0] == "accuracy minus Ind (points)" and headers[4] == "95 % interval" and headers[-1] == "verdict"
    assert rows[0] == ["kd", "4.00", "2.00", "3.00 – 5.00", "[3.00, 5.00]", "4", "0", "held"]  # pairs 3, 5, 4, 4
    assert rows[1][-1] == "not conclusive" and rows[-1][0] == "control (Ind vs Ind)" and rows[-1][-1] == ""
    assert rows[-1][3] == "-1.50 – 1.50"
