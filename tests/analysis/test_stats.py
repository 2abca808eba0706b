"""The statistics of the what-transferred verdicts: ties split, degenerate and seed-aware bootstrap intervals, the
verdict rule, and — through the real Grad-CAM — a student built close to the teacher is "held" against the
independent students' control while one exchangeable with them is "not conclusive"."""

import pytest
import torch
from torch import nn

from kdlab.analysis.analyze import localisation
from kdlab.analysis.gradcam import cam_win_rate
from kdlab.analysis.stats import Estimate, bootstrap_interval, estimate, paired_scores, verdict
from kdlab.analysis.subjects import Subjects


def test_ties_count_half_so_a_model_against_itself_scores_exactly_half():
    a = torch.tensor([0.1, 0.5, 0.5, 0.9])
    b = torch.tensor([0.2, 0.5, 0.4, 0.9])
    assert paired_scores(a, b).tolist() == [0.0, 0.5, 1.0, 0.5]
    assert torch.equal(paired_scores(a, b) + paired_scores(b, a), torch.ones(4))
    assert float(paired_scores(a, a).mean()) == 0.5


def test_the_interval_of_two_identical_models_is_degenerate():
    same = torch.rand(3, 2, 50)  # each model compared with itself: every comparison a tie
    scores = paired_scores(same, same)
    assert bootstrap_interval(scores, rounds=200) == (50.0, 50.0)
    e = estimate(scores, ties=300, rounds=200)
    assert (e.mean, e.std, e.low, e.high, e.pairs, e.ties) == (50.0, 0.0, 50.0, 50.0, 6, 300)


def test_the_interval_resamples_the_seeds_not_only_the_images():
    # three student seeds that always lose, always win, always tie: images alone cannot move the mean, seeds can
    scores = torch.stack([torch.zeros(1, 400), torch.ones(1, 400), torch.full((1, 400), 0.5)])
    low, high = bootstrap_interval(scores, rounds=400)
    assert low < 25 and high > 75
    e = estimate(scores, ties=400, rounds=400)
    assert e.mean == pytest.approx(50.0) and e.std == pytest.approx(50.0)
    images_only = bootstrap_interval(torch.rand(1, 1, 400).round(), rounds=400)
    assert images_only[1] - images_only[0] < 15  # 400 coin flips: about ±5 points


def est(low: float, high: float) -> Estimate:
    return Estimate((low + high) / 2, 1.0, low, high, 9, 0)


@pytest.mark.parametrize(
    "effect, paper, higher, expected",
    [
        (est(60, 70), None, True, "held"),
        (est(60, 70), 55.0, True, "held"),
        (est(60, 70), 75.0, True, "did not hold"),  # above the control, but short of the paper's effect
        (est(30, 40), None, True, "did not hold"),  # outside the control the other way
        (est(45, 65), None, True, "not conclusive"),
        (est(30, 40), None, False, "held"),
        (est(60, 70), None, False, "did not hold"),
    ],
)
def test_the_verdict_rule(effect, paper, higher, expected):
    control = est(42, 58)
    assert verdict(effect, control, higher=higher, paper=paper) == expected


class Net(nn.Sequential):
    stage_names = ("1",)


def net(seed: int, like: nn.Module | None = None, noise: float = 0.0) -> Net:
    torch.manual_seed(seed)
    model = Net(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))
    if like is not None:  # the teacher's weights, a little perturbed: a student that learned its teacher
        with torch.no_grad():
            for mine, theirs in zip(model.parameters(), like.parameters(), strict=True):
                mine.copy_(theirs + noise * torch.randn_like(theirs))
    return model


def test_a_model_against_itself_through_grad_cam_is_exactly_half():
    teacher, a = net(0), net(1)
    x, y = torch.rand(30, 1, 8, 8), torch.randint(0, 4, (30,))
    assert cam_win_rate((teacher, "1"), (a, "1"), (a, "1"), x, y) == 50.0


def test_a_student_close_to_the_teacher_holds_and_an_exchangeable_one_is_not_conclusive():
    teacher = net(0)
    independent = {f"ind seed{i}": net(10 + i) for i in range(3)}
    close = {f"close seed{i}": net(20 + i, like=teacher, noise=0.1) for i in range(3)}
    alike = {f"alike seed{i}": net(30 + i) for i in range(3)}
    methods = {**{k: "close" for k in close}, **{k: "alike" for k in alike}, **{k: "ce" for k in independent}}
    subjects = Subjects(teacher, "t", {**close, **alike}, independent, None, {}, methods)  # type: ignore[arg-type]
    torch.manual_seed(1)
    x, y = torch.rand(300, 1, 8, 8), torch.randint(0, 4, (300,))
    loc = localisation(subjects, x, y)
    control = Estimate(**loc["control"])
    assert control.mean == pytest.approx(50.0) and control.pairs == 6  # every ordered pair: a reverse adds to 100
    assert set(loc["pairs"]) == set(close) | set(alike) and all(len(row) == 3 for row in loc["pairs"].values())
    assert loc["methods"]["close"]["pairs"] == 9
    assert verdict(Estimate(**loc["methods"]["close"]), control) == "held"
    assert sum(e["ties"] for e in loc["methods"].values()) > 0  # tiny nets: all-zero CAMs tie (cosine 0 and 0)
    assert verdict(Estimate(**loc["methods"]["alike"]), control) == "not conclusive"
