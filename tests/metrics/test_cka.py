import pytest
import torch

from kdlab.metrics import as_matrix, linear_cka, rbf_cka

CKAS = [linear_cka, rbf_cka]


def data(n: int = 64, p: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def orthogonal(p: int, seed: int = 1) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


@pytest.mark.parametrize("cka", CKAS)
def test_cka_of_a_representation_with_itself_is_one(cka):
    x = data()
    assert cka(x, x).item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("cka", CKAS)
def test_invariant_to_orthogonal_maps_isotropic_scale_and_translation(cka):
    x, y = data(), data(p=7, seed=3) + data(p=12)[:, :7]
    base = cka(x, y).item()
    assert 0.0 < base < 1.0
    assert cka(x @ orthogonal(12), y).item() == pytest.approx(base, abs=1e-10)
    assert cka(x, 3.7 * y + 5.0).item() == pytest.approx(base, abs=1e-10)
    assert cka(x, x @ orthogonal(12) * 0.01).item() == pytest.approx(1.0, abs=1e-10)


def test_linear_cka_is_not_invariant_to_an_anisotropic_scaling():
    x = data()
    assert linear_cka(x, x * torch.linspace(0.1, 10, 12, dtype=torch.float64)).item() < 0.9


def test_linear_cka_equals_the_hsic_form_with_linear_kernels():
    x, y = data(), data(p=5, seed=4)
    n = len(x)
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, m = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    expected = (k * m).sum() / ((k * k).sum() * (m * m).sum()).sqrt()
    assert linear_cka(x, y).item() == pytest.approx(expected.item(), rel=1e-10)


def test_independent_representations_score_low():
    assert linear_cka(data(n=2000, p=4), data(n=2000, p=4, seed=9)).item() < 0.01


def test_conv_maps_are_averaged_over_space_per_channel():
    maps = torch.randn(10, 3, 4, 5)
    assert torch.allclose(as_matrix(maps), maps.double().mean(dim=(2, 3)))
    assert linear_cka(maps, maps.mean(dim=(2, 3))).item() == pytest.approx(1.0)


def test_mismatched_rows_are_refused():
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(data(n=10), data(n=11))
