"""Plain-text tables and mean ± std formatting."""

from __future__ import annotations

import doctest

import pytest

import kdlab.reporting.table
from kdlab.reporting.table import format_table, mean_std


def test_exact_layout_numbers_right_text_left_none_dash() -> None:
    out = format_table(
        ["name", "epochs", "acc", "note"],
        [["kd", 10, 0.912345, "ok"], ["fitnet-long", None, "88.10", None]],
    )
    assert out == (
        "name         epochs     acc  note\n"
        "-----------  ------  ------  ----\n"
        "kd               10  0.9123  ok\n"
        "fitnet-long       -   88.10  -"
    )


def test_explicit_align_and_no_trailing_spaces() -> None:
    out = format_table(["a", "b"], [["1", "x"], ["22", "yy"]], align="lr")
    assert out.splitlines() == ["a    b", "--  --", "1    x", "22  yy"]
    assert all(line == line.rstrip() for line in out.splitlines())


def test_mean_std_and_plus_minus_cells_are_numeric() -> None:
    out = format_table(["m", "acc"], [["kd", mean_std([0.91, 0.92], scale=100)], ["ce", None]])
    assert out.splitlines()[2] == "kd  91.50 ± 0.71"
    assert out.splitlines()[3] == "ce" + " " * 13 + "-"


def test_empty_rows_and_bad_shapes() -> None:
    assert format_table(["run", "acc"], []) == "run  acc\n---  ---"
    with pytest.raises(ValueError):
        format_table(["a", "b"], [["only one"]])
    with pytest.raises(ValueError):
        format_table(["a", "b"], [["1", "2"]], align="lx")


def test_mean_std() -> None:
    assert mean_std([0.9123, 0.9164, 0.9082], scale=100) == "91.23 ± 0.41"
    assert mean_std([1.0, 2.0, 3.0], digits=3) == "2.000 ± 1.000"  # ddof=1: std of 1, 2, 3 is 1
    assert mean_std([0.5], scale=100) == "50.00"
    assert mean_std([]) == "-"
    assert mean_std([None, 0.25, None], scale=100) == "25.00"


def test_module_doctest() -> None:
    assert doctest.testmod(kdlab.reporting.table).failed == 0
