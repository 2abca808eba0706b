import pytest
import torch

from kdlab.analysis.surface import flat_parameters, loss_surface, plane, plot_surface


def states(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in torch.nn.Linear(3, 2).state_dict().items()}


def test_the_plane_holds_the_three_points_at_their_coordinates():
    t, i, f = (flat_parameters(states(s), ["weight", "bias"]) for s in (0, 1, 2))
    u, v, points = plane(t, i, f)
    assert u @ v == pytest.approx(0.0, abs=1e-12) and u.norm() == pytest.approx(1.0) and v.norm() == pytest.approx(1.0)
    for point, flat in (("init", i), ("final", f)):
        x, y = points[point]
        assert torch.allclose(t + x * u + y * v, flat, atol=1e-6)
    with pytest.raises(ValueError, match="collinear"):
        plane(t, i, t + 2 * (i - t))


def test_the_surface_of_the_squared_distance_to_the_teacher_is_x2_plus_y2_and_the_model_is_restored():
    model = torch.nn.Linear(3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    teacher, init, final = states(0), states(1), states(2)
    target = flat_parameters(teacher, ["weight", "bias"])

    def distance(m: torch.nn.Module) -> float:
        return float((flat_parameters(dict(m.named_parameters()), ["weight", "bias"]) - target).pow(2).sum())

    surface = loss_surface(model, teacher, init, final, distance, steps=7)
    grid_x, grid_y = torch.meshgrid(surface.xs, surface.ys, indexing="xy")
    assert torch.allclose(surface.loss, grid_x**2 + grid_y**2, atol=1e-5)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert surface.xs.min() < min(p[0] for p in surface.points.values())


def test_the_plot_is_written(tmp_path):
    surface = loss_surface(
        torch.nn.Linear(3, 2), states(0), states(1), states(2), lambda m: float(m.weight.pow(2).sum()) + 0.1, steps=5
    )
    plot_surface(surface, str(tmp_path / "s.png"), "test")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
