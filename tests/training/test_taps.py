import pytest
import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.training.taps import Taps


def net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 8), nn.Tanh()), nn.Linear(8, 3))


def test_taps_return_the_named_module_outputs():
    model = net()
    x = torch.randn(5, 4)
    with Taps(model, ["1", "2.1"]) as taps:
        model(x)
        features = taps.collect()
    assert set(features) == {"1", "2.1"}
    assert torch.equal(features["1"], torch.relu(model[0](x)))
    assert torch.equal(features["2.1"], torch.tanh(model[2][0](features["1"])))
    assert taps.collect() == {}  # collected outputs are released


def test_removed_taps_keep_nothing():
    model = net()
    taps = Taps(model, ["1"])
    taps.remove()
    model(torch.randn(2, 4))
    assert taps.collect() == {}
    assert not model[1]._forward_hooks


def test_unknown_layer_names_the_nearest_valid_paths():
    with pytest.raises(ConfigError) as err:
        Taps(net(), ["2.O"], owner="student")
    message = str(err.value)
    assert "'2.O'" in message and "student" in message and "Did you mean" in message and "'2.0'" in message
    assert "valid ones include: 0, 1, 2, 2.0, 2.1, 3" in message


def test_unknown_layer_of_a_zoo_model_suggests_its_stage():
    from kdlab.models import MODELS

    with pytest.raises(ConfigError, match="Did you mean 'layer3'"):
        Taps(MODELS.get("resnet8")(num_classes=10, in_channels=1), ["layer_3"])
