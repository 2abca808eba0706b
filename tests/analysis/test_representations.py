import pytest
import torch

from kdlab.analysis.representations import cka_matrix
from kdlab.data.loader import TensorLoader
from kdlab.models import MODELS


def net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return MODELS.get("cnn")(num_classes=4, in_channels=1, width=4)


def test_a_model_against_itself_has_a_unit_diagonal_and_another_model_does_not():
    x = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    batches = TensorLoader(x, torch.zeros(64, dtype=torch.long), 16)
    same = cka_matrix(net(0), net(0), batches.epoch(0))
    assert same.shape == (3, 3) and torch.allclose(same.diagonal(), torch.ones(3, dtype=torch.float64))
    other = cka_matrix(net(0), net(1), batches.epoch(0), limit=40)
    assert (other.diagonal() < 1.0 - 1e-6).all()
    partial = cka_matrix(net(0), net(1), batches.epoch(0), ["stage3"], ["stage1", "stage3"], limit=40)
    assert partial.shape == (1, 2) and partial[0, 1].item() == pytest.approx(other[2, 2].item(), abs=1e-12)
    with pytest.raises(ValueError, match="name the layers"):
        cka_matrix(torch.nn.Linear(2, 2), net(0), batches.epoch(0))
