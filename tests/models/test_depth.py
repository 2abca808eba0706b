"""Depth-switchable networks: the switch, stage taps, BatchNorm modes and recalibration."""

import pytest
import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.models import MODELS, count_macs, count_parameters
from kdlab.models.depth import kept_blocks
from kdlab.models.depth_norms import RecalibratedBatchNorm
from kdlab.training.taps import Taps

DATA = {"num_classes": 10, "in_channels": 1, "image_size": (28, 28)}


def _randomise_norms(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial affine and running statistics everywhere, so that a wrong copy shows."""
    g = torch.Generator().manual_seed(seed)
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and (
            "norm" in name or "shortcut.1" in name or name.split(".")[-1].startswith(("mean", "var"))
        ):
            if "var" in name.split(".")[-1] or name.endswith("weight"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=g))
            else:
                tensor.copy_(0.3 * torch.randn(tensor.shape, generator=g))


def _ddnn_resnet(**options):
    return MODELS.get("ddnn_resnet")(**DATA, depths=(8, 14, 20), width=4, stem_width=4, **options)


def _copy(target: nn.Module, source: nn.Module) -> None:
    target.load_state_dict(source.state_dict())


@pytest.mark.parametrize("keep, depth, blocks", [("first", 8, (0,)), ("first", 14, (0, 1)), ("uniform", 14, (0, 2))])
def test_switch_equals_a_hand_built_resnet_with_copied_weights(keep, depth, blocks):
    net = _ddnn_resnet(bn="shared", keep=keep)
    _randomise_norms(net)
    plain = MODELS.get("resnet")(**DATA, depth=depth, width=4, stem_width=4)
    for name in ("normalize", "conv1", "norm1", "fc"):
        _copy(getattr(plain, name), getattr(net, name))
    for stage in ("layer1", "layer2", "layer3"):
        for j, b in enumerate(blocks):
            _copy(getattr(plain, stage)[j], getattr(net, stage)[b])
    x = torch.rand(6, 1, 28, 28)
    net.eval(), plain.eval()
    torch.testing.assert_close(net(x, depth=depth), plain(x), rtol=0, atol=1e-6)
    net.set_depth(depth)
    torch.testing.assert_close(net(x), plain(x), rtol=0, atol=1e-6)
    assert count_macs(net, (1, 28, 28)) == count_macs(plain, (1, 28, 28))


def test_switch_equals_a_hand_built_vgg13_inside_vgg19():
    net = MODELS.get("ddnn_vgg")(**DATA, depths=(13, 19), bn="shared")
    _randomise_norms(net)
    plain = MODELS.get("vgg13")(**DATA)
    for index in range(1, 6):
        _copy(getattr(plain, f"block{index}"), nn.Sequential(*list(getattr(net, f"block{index}"))[:6]))
    _copy(plain.fc, net.fc)
    x = torch.rand(3, 1, 28, 28)
    net.eval(), plain.eval()
    torch.testing.assert_close(net(x, depth=13), plain(x), rtol=0, atol=1e-5)


def test_resnet18_inside_resnet34_and_the_named_nestings():
    net = MODELS.get("ddnn_resnet_basic")(**DATA, width=8)
    assert net.depths == (18, 34) and net.budgets == {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
    assert net.subnet_plan(18) == {f"layer{i}": (0, 1) for i in range(1, 5)}
    assert MODELS.get("ddnn_resnet")(**DATA).depths == (20, 32, 44, 56)
    assert MODELS.get("ddnn_vgg")(**DATA).budgets[16] == (2, 2, 3, 3, 3)
    assert count_parameters(MODELS.get("resnet18")(num_classes=10)) == 11_173_962  # the CIFAR ResNet-18


def test_depth_arguments_and_unknown_depth_error():
    net = _ddnn_resnet()
    assert net.depth == 20
    with net.at_depth(8):
        assert net.depth == 8
    assert net.depth == 20
    for bad in (15, "deep", 0):
        with pytest.raises(ConfigError, match=r"available depths: 8, 14, 20 \(full: 20\)"):
            net(torch.rand(1, 1, 28, 28), depth=bad)
    assert net.depth == 20


def test_taps_see_each_depths_stage_outputs():
    net = _ddnn_resnet(bn="shared").eval()
    x = torch.rand(2, 1, 28, 28)
    with Taps(net, ["layer1", "layer3"]) as taps:
        logits = net(x, depth=8)
        seen = taps.collect()
    again, stages = net.forward_stages(x, depth=8)
    torch.testing.assert_close(logits, again)
    torch.testing.assert_close(seen["layer1"], stages[0])
    torch.testing.assert_close(seen["layer3"], stages[2])
    assert [tuple(s.shape) for s in stages] == [(2, 4, 28, 28), (2, 8, 14, 14), (2, 16, 7, 7)]
    full_stage = net.forward_stages(x)[1][0]
    assert not torch.allclose(full_stage, stages[0])  # layer1 runs three blocks at depth 20, one at 8


def test_kept_blocks():
    assert kept_blocks(3, 9, "uniform") == (0, 4, 8)
    assert kept_blocks(2, 3, "uniform") == (0, 2)
    assert kept_blocks(1, 5, "uniform") == (0,)
    assert kept_blocks(3, 9, "first") == (0, 1, 2)
    assert all(len(set(kept_blocks(n, 9, "uniform"))) == n for n in range(1, 10))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"budgets": {8: [1, 1, 1], 14: [2, 1, 3], 20: [3, 3, 2]}}, "fit inside the full net"),
        ({"budgets": {8: [1, 1]}}, "3 block counts"),
        ({"budgets": {8: [0, 1, 1]}}, "integers ≥ 1"),
        ({"bn": "batch"}, "shared, private, recalibrated"),
        ({"keep": "last"}, "first, uniform"),
    ],
)
def test_bad_options_are_clear_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        _ddnn_resnet(**options)


def _bn_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_recalibration_changes_the_statistics_of_sub_nets_only():
    net = _ddnn_resnet(bn="recalibrated")
    _randomise_norms(net)
    before = _bn_state(net)
    images = [torch.rand(16, 1, 28, 28) for _ in range(3)]
    net.recalibrate(images)
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.split(".")[-1].endswith(("_d8", "_d14")) for k in changed)
    assert any(k.endswith("mean_d8") for k in changed) and any(k.endswith("mean_d14") for k in changed)
    # the stem's input does not depend on the depth: its depth-8 statistics are the exact mean over the images
    with torch.no_grad():
        stem = torch.cat([net.conv1(net.normalize(x)) for x in images])
    torch.testing.assert_close(net.norm1.mean_d8, stem.mean(dim=(0, 2, 3)), rtol=0, atol=1e-5)
    # the full net and the weights are untouched; a sub-net now evaluates with its own statistics
    assert all(torch.equal(before[k], after[k]) for k in before if "_d" not in k.split(".")[-1])


def test_sub_nets_use_the_full_nets_statistics_until_recalibrated():
    recal = _ddnn_resnet(bn="recalibrated").eval()
    _randomise_norms(recal)
    shared = _ddnn_resnet(bn="shared").eval()
    shared.load_state_dict({k: v for k, v in recal.state_dict().items() if "_d" not in k.split(".")[-1]})
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(recal(x, depth=8), shared(x, depth=8))
    recal.recalibrate([torch.rand(32, 1, 28, 28)])
    assert not torch.allclose(recal(x, depth=8), shared(x, depth=8))
    torch.testing.assert_close(recal(x, depth=20), shared(x, depth=20))


def test_training_sub_nets_leaves_the_full_statistics_alone_unless_shared():
    x = torch.rand(8, 1, 28, 28)
    for bn, moves in (("recalibrated", False), ("private", False), ("shared", True)):
        net = _ddnn_resnet(bn=bn).train()
        norm = net.norm1 if bn != "private" else net.norm1.by_depth["d20"]
        before = norm.running_mean.clone()
        net(x, depth=8)
        assert (not torch.equal(before, norm.running_mean)) == moves, bn


def test_private_norms_exist_only_for_the_depths_that_run_them():
    net = _ddnn_resnet(bn="private")
    assert set(net.layer1[0].norm1.by_depth) == {"d8", "d14", "d20"}
    assert set(net.layer1[1].norm1.by_depth) == {"d14", "d20"}
    assert set(net.layer1[2].norm1.by_depth) == {"d20"}
    recal = _ddnn_resnet(bn="recalibrated")
    assert isinstance(recal.layer1[2].norm1, RecalibratedBatchNorm) and not hasattr(recal.layer1[2].norm1, "mean_d8")


def test_recalibration_needs_the_recalibrated_mode():
    with pytest.raises(ConfigError, match="bn=recalibrated"):
        _ddnn_resnet(bn="shared").recalibrate([torch.rand(2, 1, 28, 28)])
