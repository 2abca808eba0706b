"""MAC and parameter counters, checked by hand and against the published CIFAR-100 numbers."""

import pytest
import torch
from torch import nn

from kdlab.models import MODELS, count_macs, count_parameters

# Trainable parameters at 100 classes (CRD, Tian et al. ICLR 2020, Table 1-2; He et al. 2016 for resnet110).
PUBLISHED_PARAMETERS = {
    "resnet20": 0.278e6,
    "resnet56": 0.86e6,
    "resnet110": 1.73e6,
    "resnet8x4": 1.23e6,
    "resnet32x4": 7.43e6,
    "wrn16_2": 0.70e6,
    "wrn40_2": 2.26e6,
    "vgg8": 3.96e6,
    "vgg13": 9.46e6,
}
# Multiply-adds of one 32×32×3 image (docs: design.md, "Performance, in numbers").
PUBLISHED_MACS = {
    "resnet32x4": 1083e6,
    "resnet8x4": 177e6,
    "resnet56": 126e6,
    "resnet20": 41e6,
    "wrn40_2": 328e6,
    "wrn16_2": 101e6,
    "vgg13": 285e6,
    "vgg8": 96e6,
}


@pytest.mark.parametrize(("name", "expected"), PUBLISHED_PARAMETERS.items())
def test_parameter_counts_match_published(name: str, expected: float) -> None:
    model = MODELS.get(name)(num_classes=100, in_channels=3, image_size=(32, 32))
    assert count_parameters(model) == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize(("name", "expected"), PUBLISHED_MACS.items())
def test_macs_match_published(name: str, expected: float) -> None:
    model = MODELS.get(name)(num_classes=100, in_channels=3, image_size=(32, 32))
    assert count_macs(model, (3, 32, 32)) == pytest.approx(expected, rel=0.05)


def test_count_macs_by_hand() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8·10·10 outputs × 3·3·3 = 21 600
        nn.BatchNorm2d(8),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4),  # 8·5·5 × 2·3·3 = 3 600
        nn.Flatten(),
        nn.Linear(200, 5),  # 200 · 5 = 1 000
    )
    model.train()
    assert count_macs(model, (3, 10, 10)) == 21_600 + 3_600 + 1_000
    assert model.training, "training mode is restored"
    assert all(not m._forward_hooks for m in model.modules()), "hooks are removed"
    assert model[1].num_batches_tracked.item() == 0, "counted in eval mode: no norm statistics updated"


def test_count_macs_linear_on_sequences_counts_every_position() -> None:
    assert count_macs(nn.Linear(4, 3), (6, 4)) == 6 * 4 * 3


def test_count_parameters_counts_only_trainable() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    assert count_parameters(model) == (4 * 3 + 3) + (3 + 3) + (3 * 2 + 2)
    model[0].requires_grad_(False)
    assert count_parameters(model) == (3 + 3) + (3 * 2 + 2)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert torch.is_tensor(model[1].running_mean)
