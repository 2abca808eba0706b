import pytest
import torch

from kdlab.analysis.boundaries import boundary_ious, boundary_similarity, plane_grid, region_iou


def test_the_grid_lies_on_the_plane_and_covers_the_three_images():
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.rand(1, 4, 4, generator=g) for _ in range(3))
    points, coords = plane_grid(a, b, c, steps=21, margin=0.1)
    assert points.shape == (441, 1, 4, 4)
    basis = torch.stack([(b - a).flatten(), (c - a).flatten()], 1)
    offsets = (points - a).flatten(1).T
    solution = torch.linalg.lstsq(basis, offsets).solution
    assert torch.allclose(basis @ solution, offsets, atol=1e-5)  # every point is a + s(b − a) + t(c − a)
    assert coords["a"] == (0.0, 0.0) and coords["b"][1] == 0.0
    dist = (points.flatten(1)[:, None] - torch.stack([a, b, c]).flatten(1)[None]).norm(dim=-1).min(0).values
    assert (dist < 0.2 * (b - a).norm()).all()  # each image is near a grid point


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_region_iou_is_agreement_over_two_minus_agreement_for_partitions(seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randint(0, 5, (2500,), generator=g), torch.randint(0, 5, (2500,), generator=g)
    b[:1200] = a[:1200]
    p = (a == b).double().mean().item()
    assert region_iou(a, b, 5) == pytest.approx(p / (2 - p))
    assert region_iou(a, a, 5) == 1.0


def test_a_model_against_itself_scores_one_and_a_constant_model_less():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    constant = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    torch.nn.init.zeros_(constant[1].weight)
    with torch.no_grad():
        constant[1].bias.copy_(torch.tensor([0.0, 0.0, 9.0]))  # class 2 everywhere
    images = torch.rand(10, 1, 4, 4)
    same = boundary_similarity(net, net, images, 3, triplets=5, steps=10)
    other = boundary_similarity(net, constant, images, 3, triplets=5, steps=10)
    assert same["iou"] == 1.0 and same["std"] == 0.0 and other["iou"] < 1.0
    assert boundary_similarity(net, constant, images, 3, triplets=5, steps=10) == other  # same seed, same triplets
    with pytest.raises(ValueError, match="at least 3"):
        boundary_similarity(net, net, images[:2], 3)
    ious = boundary_ious(net, {"same": net, "constant": constant}, images, 3, triplets=5, steps=10)
    assert ious["same"].tolist() == [1.0] * 5 and float(ious["constant"].mean()) == pytest.approx(other["iou"])
