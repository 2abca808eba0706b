"""Every registered zoo model honours the model contract: logits only, named stages, an embedding, norms."""

import inspect

import pytest
import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.models import MODELS, Normalize, norm_layer

PREFIX = ("num_classes", "in_channels", "image_size", "mean", "std")
SETTINGS = [(7, 1, (28, 28)), (10, 3, (32, 32))]


def _has_norm(name: str) -> bool:
    return "norm" in inspect.signature(MODELS.get(name)).parameters


@pytest.mark.parametrize("name", MODELS.names("image_classification"))
def test_builder_follows_the_config_convention(name: str) -> None:
    builder = MODELS.get(name)
    parameters = list(inspect.signature(builder).parameters.values())
    assert tuple(p.name for p in parameters[: len(PREFIX)]) == PREFIX
    for parameter in parameters:
        assert parameter.annotation is not inspect.Parameter.empty, parameter.name
        assert parameter.default is not inspect.Parameter.empty, parameter.name
        assert parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert builder.__doc__ and builder.__doc__.strip()


@pytest.mark.parametrize("name", MODELS.names("image_classification"))
@pytest.mark.parametrize(("num_classes", "in_channels", "image_size"), SETTINGS)
def test_forward_stages_embedding_and_backward(name, num_classes, in_channels, image_size) -> None:
    torch.manual_seed(0)
    model = MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    modules = dict(model.named_modules())
    assert isinstance(modules.get("fc"), nn.Linear)
    for path in (*model.stage_names, model.embedding_name):
        assert path in modules, path
    captured: dict[str, torch.Tensor] = {}
    for path in (*model.stage_names, model.embedding_name):
        modules[path].register_forward_hook(lambda m, i, o, path=path: captured.__setitem__(path, o))

    logits = model(torch.rand(2, in_channels, *image_size))
    assert logits.shape == (2, num_classes)
    assert torch.isfinite(logits).all()
    embedding = captured[model.embedding_name]
    assert embedding.shape == (2, model.fc.in_features)
    for path in model.stage_names:
        assert captured[path].shape[0] == 2 and captured[path].dim() in (2, 4), path

    logits.square().sum().backward()
    for pname, parameter in model.named_parameters():
        assert parameter.grad is not None, pname
        assert torch.isfinite(parameter.grad).all(), pname


@pytest.mark.parametrize("name", [n for n in MODELS.names("image_classification") if _has_norm(n)])
def test_layer_norm_variant_has_no_batch_norm_and_is_per_example(name: str) -> None:
    torch.manual_seed(0)
    model = MODELS.get(name)(num_classes=5, norm="layer")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    x = torch.rand(3, 3, 32, 32)
    # Without batch statistics an example's logits do not depend on the rest of the batch, even in train mode.
    torch.testing.assert_close(model(x)[:1], model(x[:1]), rtol=1e-4, atol=1e-5)


def test_norm_layer_kinds() -> None:
    assert isinstance(norm_layer("batch", 4), nn.BatchNorm2d)
    layer = norm_layer("layer", 4)
    assert isinstance(layer, nn.GroupNorm) and layer.num_groups == 1
    assert isinstance(norm_layer("none", 4), nn.Identity)
    with pytest.raises(ConfigError, match="instance"):
        norm_layer("instance", 4)


def test_normalize_matches_hand_formula_and_is_saved() -> None:
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    normalize = Normalize(mean, std)
    assert set(normalize.state_dict()) == {"mean", "std"}
    assert normalize.state_dict()["mean"].shape == (1, 3, 1, 1)
    x = torch.rand(2, 3, 4, 5)
    expected = torch.stack([(x[:, c] - mean[c]) / std[c] for c in range(3)], dim=1)
    torch.testing.assert_close(normalize(x), expected)

    model = MODELS.get("resnet8")(mean=mean, std=std)
    assert {"normalize.mean", "normalize.std"} <= set(model.state_dict())
    torch.testing.assert_close(model.normalize.std.flatten(), torch.tensor(std))


def test_normalize_identity_and_bad_statistics() -> None:
    x = torch.rand(2, 3, 4, 4)
    assert torch.equal(Normalize()(x), x)
    assert Normalize().state_dict() == {}
    with pytest.raises(ConfigError, match="both"):
        Normalize((0.5,), None)
    with pytest.raises(ConfigError, match="one value per input channel"):
        MODELS.get("resnet8")(in_channels=3, mean=(0.5, 0.5), std=(0.2, 0.2))


@pytest.mark.parametrize("depth", [12, 4, 15])
def test_invalid_wrn_depth_is_a_config_error(depth: int) -> None:
    with pytest.raises(ConfigError, match=rf"6n \+ 4.*got {depth}"):
        MODELS.get("wrn")(depth=depth)


def test_invalid_resnet_depth_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"6n \+ 2.*got 18"):
        MODELS.get("resnet")(depth=18)


def test_architecture_details() -> None:
    lenet = MODELS.get("lenet5")(in_channels=1, image_size=(28, 28))
    assert lenet.embed[0].in_features == 16 * 5 * 5 and lenet.fc.in_features == 84
    mlp = MODELS.get("mlp")(hidden=32, depth=3, in_channels=1, image_size=(28, 28))
    assert mlp.stage_names == ("blocks.0", "blocks.1", "blocks.2") and mlp.blocks[0][0].in_features == 784
    resnet = MODELS.get("resnet32x4")()
    assert (resnet.conv1.out_channels, resnet.fc.in_features, len(resnet.layer1)) == (32, 256, 5)
    assert isinstance(MODELS.get("resnet110")().layer3[0].conv1, nn.Conv2d)
    assert len(MODELS.get("resnet110")().layer3) == 18
    wrn = MODELS.get("wrn40_2")()
    assert len(wrn.block1) == 6 and wrn.fc.in_features == 128
    vgg = MODELS.get("vgg16")()
    convs = [sum(isinstance(m, nn.Conv2d) for m in getattr(vgg, f"block{i}").modules()) for i in range(1, 6)]
    assert convs == [2, 2, 3, 3, 3]
    cnn = MODELS.get("cnn")(width=8, convs=2, norm="none")
    assert sum(isinstance(m, nn.Conv2d) for m in cnn.modules()) == 6
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in cnn.modules())
