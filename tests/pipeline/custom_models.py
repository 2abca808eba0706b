"""Models a user names as package.module:callable in the tests (importable: pytest puts this folder on sys.path)."""

import torch
from torch import nn


class TupleOutput(nn.Module):
    """A classifier whose forward returns (logits, features), as many user models do."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 16), nn.ReLU())
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.fc(features), features


def four_outputs(num_classes: int = 10, in_channels: int = 1, image_size: tuple[int, int] = (8, 8)) -> nn.Module:
    """Three outputs whatever the data: the wrong number for a 4-class data set."""
    return TupleOutput(in_channels * image_size[0] * image_size[1], 3)


def tuple_student(num_classes: int = 10, in_channels: int = 1, image_size: tuple[int, int] = (8, 8)) -> nn.Module:
    return TupleOutput(in_channels * image_size[0] * image_size[1], num_classes)


class FailsInTraining(TupleOutput):
    """Probes fine (eval mode) but breaks on the first training step: an error the planner cannot see."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            raise RuntimeError("this model works only in training mode's opposite")
        return super().forward(x)


def fails_in_training(num_classes: int = 10, in_channels: int = 1, image_size: tuple[int, int] = (8, 8)) -> nn.Module:
    return FailsInTraining(in_channels * image_size[0] * image_size[1], num_classes)
