import pytest
import torch
from torch import nn

from kdlab.analysis.invariance import invariance_agreement, invariance_matches, view_pair


def images(n: int = 64) -> torch.Tensor:
    return torch.rand(n, 1, 12, 12, generator=torch.Generator().manual_seed(0))


def test_zero_strength_views_are_the_image_itself():
    x = images()
    a, b = view_pair(x, "jitter", 0.0)
    assert torch.equal(a, x) and torch.allclose(b, x, atol=1e-6)
    a, b = view_pair(x, "crop", 1.0)
    assert torch.allclose(a, x, atol=1e-5) and torch.allclose(b, x, atol=1e-5)
    a, b = view_pair(x, "shift", 0.0)
    assert torch.allclose(a, x, atol=1e-5)


def test_views_depend_only_on_the_seed_and_crops_cover_the_asked_fraction():
    x = images()
    for kind, s in (("jitter", 0.5), ("crop", 0.4), ("shift", 0.2)):
        first, again = view_pair(x, kind, s, seed=3), view_pair(x, kind, s, seed=3)
        assert all(torch.equal(u, v) for u, v in zip(first, again, strict=True))
        assert not torch.equal(first[1], view_pair(x, kind, s, seed=4)[1])
    # a crop of a quarter of a ramp image spans about half of its value range per axis
    ramp = torch.linspace(0, 1, 12).expand(1, 1, 12, 12).repeat(32, 1, 1, 1)
    crop, _ = view_pair(ramp, "crop", 0.25, seed=0)
    span = crop[:, 0, 6, -2] - crop[:, 0, 6, 1]
    assert span.mean().item() == pytest.approx(0.5 * 9 / 11, abs=0.12)


def test_a_constant_model_is_perfectly_invariant_and_a_pixel_model_is_not():
    x = images()
    constant = nn.Sequential(nn.Flatten(), nn.Linear(144, 3))
    nn.init.zeros_(constant[1].weight)
    torch.manual_seed(0)
    pixel = nn.Sequential(nn.Flatten(), nn.Linear(144, 3))
    with torch.no_grad():
        pixel[1].weight.mul_(30)
    assert invariance_agreement(constant, x, "crop", 0.3) == 100.0
    assert invariance_agreement(pixel, x, "crop", 0.3) < 100.0
    assert invariance_agreement(pixel, x, "jitter", 0.0) == 100.0
    with pytest.raises(ValueError, match="fraction"):
        view_pair(x, "crop", 1.5)


def test_colour_images_also_get_a_saturation_change_and_grey_pixels_stay_grey():
    x = torch.rand(16, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    _, b = view_pair(x, "jitter", 0.5)
    grey = x[:, :1].expand(-1, 3, -1, -1).contiguous()
    _, g = view_pair(grey, "jitter", 0.5)
    assert torch.allclose(g[:, 0], g[:, 1], atol=1e-6) and torch.allclose(g[:, 1], g[:, 2], atol=1e-6)
    spread = (b - b.mean(1, keepdim=True)).abs().mean(dim=(1, 2, 3))
    base = (x - x.mean(1, keepdim=True)).abs().mean(dim=(1, 2, 3))
    assert not torch.allclose(spread, base, rtol=0.05)  # the colour spread changed


def test_the_per_image_matches_give_the_agreement_batch_by_batch():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(144, 3))
    matches = invariance_matches(net, images(), "crop", 0.5, batch_size=20)
    assert matches.shape == (64,) and matches.dtype == torch.bool
    assert 100 * matches.double().mean().item() == pytest.approx(
        invariance_agreement(net, images(), "crop", 0.5, batch_size=20)
    )
