import pytest
import torch
from torch import nn

from kdlab.analysis.gradcam import MEASURES, cam_similarities, cam_win_rate, gradcam


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


def strided(seed: int, stride: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=stride, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))  # fmt: skip


def test_every_similarity_measure_is_its_independent_formula():
    teacher, student = strided(0, 2), strided(1, 1)  # teacher maps 4×4, student maps 8×8
    x, y = torch.rand(12, 1, 8, 8), torch.randint(0, 3, (12,))
    sims = cam_similarities((teacher, "1"), (student, "1"), x, y, batch_size=5)
    assert list(sims) == list(MEASURES) and all(v.shape == (12,) for v in sims.values())
    t, s = gradcam(teacher, "1", x, y), gradcam(student, "1", x, y)
    cos = nn.functional.cosine_similarity
    assert torch.allclose(sims["cosine"], cos(t.flatten(1), s.flatten(1)), atol=1e-6)
    t4 = gradcam(teacher, "1", x, y, upsample=False)
    s4 = nn.functional.avg_pool2d(gradcam(student, "1", x, y, upsample=False)[:, None], 2)[:, 0]  # 8×8 → 4×4
    assert torch.allclose(sims["cosine, layer resolution"], cos(t4.flatten(1), s4.flatten(1)), atol=1e-6)
    pairs = zip(t, s, strict=True)
    pearson = torch.stack([torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] for a, b in pairs])
    flat = pearson.isnan()  # a constant map (all zero after the ReLU) has no correlation: scored 0
    assert flat.any() and (sims["Pearson"][flat] == 0).all()
    assert torch.allclose(sims["Pearson"][~flat], pearson[~flat], atol=1e-5)
    itself = cam_similarities((student, "1"), (student, "1"), x, y)
    alive = s.flatten(1).std(1) > 0
    assert all(torch.allclose(v[alive], torch.ones(int(alive.sum())), atol=1e-5) for v in itself.values())
