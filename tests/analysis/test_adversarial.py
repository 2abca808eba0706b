import pytest
import torch
from torch import nn

from kdlab.analysis.adversarial import calibrate_epsilon, changed, fooled_per_image, fooling_rates, ifgsm


def linear(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4))


def data(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_the_attack_stays_in_the_epsilon_ball_and_the_pixel_range_and_raises_the_loss():
    net, (x, y) = linear(0), data()
    adv = ifgsm(net, x, y, 0.1)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0.0 and adv.max() <= 1.0
    loss = nn.functional.cross_entropy
    with torch.no_grad():
        assert loss(net(adv), y) > loss(net(x), y)
    assert torch.equal(ifgsm(net, x, y, 0.0), x)
    assert all(p.grad is None for p in net.parameters())


def test_calibration_reaches_the_target_fooling_rate():
    net, (x, _) = linear(0), data()
    with torch.no_grad():
        y = net(x).argmax(-1)  # a model that is right on its data, like a trained teacher on test images
    epsilon, rate = calibrate_epsilon(net, x, y, target=0.85)
    assert 0.0 < epsilon < 0.5 and rate == pytest.approx(0.85, abs=0.03)
    assert changed(net, x, ifgsm(net, x, y, epsilon)).double().mean().item() == pytest.approx(rate)


def test_student_rates_are_conditional_on_fooling_the_attacked_model():
    net, other, (x, y) = linear(0), linear(1), data()
    constant = linear(2)
    nn.init.zeros_(constant[1].weight)
    rates = fooling_rates(net, {"same": net, "other": other, "constant": constant}, x, y, 0.2)
    assert 0 < rates["attacked"] <= 100 and rates["n"] == pytest.approx(rates["attacked"] / 100 * len(x))
    assert rates["same"] == 100.0 and rates["constant"] == 0.0 and 0.0 <= rates["other"] <= 100.0


def test_the_per_image_form_gives_the_rates():
    net, other, (x, y) = linear(0), linear(1), data()
    fooled, hits = fooled_per_image(net, {"same": net, "other": other}, x, y, 0.2)
    rates = fooling_rates(net, {"same": net, "other": other}, x, y, 0.2)
    assert len(hits["other"]) == int(fooled.sum()) == rates["n"] and bool(hits["same"].all())
    assert 100 * hits["other"].double().mean().item() == pytest.approx(rates["other"])
