import pytest
import torch
from torch import nn

from kdlab.analysis.gradcam import cam_win_rate, gradcam


def cam_net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )


def test_gradcam_before_global_pooling_is_the_class_activation_map():
    net, x, y = cam_net(0), torch.rand(5, 1, 6, 6), torch.tensor([0, 1, 2, 0, 1])
    maps = gradcam(net, "1", x, y)
    activations = net[1](net[0](x))
    weights = net[4].weight[y] / 36  # ∂y_c/∂A_k(u,v) = W[c,k] / (h·w) through the average pool
    expected = torch.relu((weights[:, :, None, None] * activations).sum(1))
    assert maps.shape == (5, 6, 6) and torch.allclose(maps, expected, atol=1e-6)
    assert all(p.grad is None for p in net.parameters())


def test_gradcam_is_upsampled_to_the_input_and_refuses_flat_layers():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 16, 3))
    assert gradcam(net, "1", torch.rand(2, 1, 8, 8), torch.tensor([0, 2])).shape == (2, 8, 8)
    with pytest.raises(ValueError, match=r"\[B, K, h, w\]"):
        gradcam(net, "2", torch.rand(2, 1, 8, 8), torch.tensor([0, 2]))


def test_a_copy_of_the_teacher_always_wins_and_the_rate_is_antisymmetric():
    teacher, a, b = cam_net(0), cam_net(1), cam_net(2)
    copy = cam_net(0)
    x, y = torch.rand(40, 1, 6, 6), torch.randint(0, 3, (40,))
    assert cam_win_rate((teacher, "1"), (copy, "1"), (a, "1"), x, y) == 100.0
    ab, ba = (
        cam_win_rate((teacher, "1"), (a, "1"), (b, "1"), x, y),
        cam_win_rate((teacher, "1"), (b, "1"), (a, "1"), x, y),
    )
    assert ab + ba == pytest.approx(100.0)  # continuous maps: no ties
