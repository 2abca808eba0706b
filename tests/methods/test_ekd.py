"""Embedded KD: the terms, their values, and which way their gradients flow."""

import pytest
import torch
import torch.nn.functional as F

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.losses.features import attention_transfer
from kdlab.methods import MethodContext, build_method
from kdlab.models import MODELS
from kdlab.training.taps import Taps

DATA = {"num_classes": 10, "in_channels": 1, "image_size": (28, 28)}


def _net():
    torch.manual_seed(0)
    return MODELS.get("ddnn_resnet")(**DATA, depths=(8, 14, 20), width=4, stem_width=4)


def _terms(net, params, x, y):
    method = build_method("ekd", params, MethodContext(net, None, 10))
    with Taps(net, method.student_layers) as taps:
        logits = net(x)
        features = taps.collect()
    logits.retain_grad()
    for f in features.values():
        f.retain_grad()
    batch = Batch(x=x, y=y, index=torch.arange(len(x)))
    return method, logits, features, method(ModelOutput(logits=logits, features=features), None, batch)


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)


def test_terms_per_sub_net_and_their_values():
    net, (x, y) = _net(), _batch()
    _, logits, features, terms = _terms(net, {}, x, y)
    assert set(terms) == {"ce", "ce_d8", "kl_d8", "at_d8", "ce_d14", "kl_d14", "at_d14"}
    sub, stages = net.forward_stages(x, depth=8)
    torch.testing.assert_close(terms["ce"], F.cross_entropy(logits, y))
    torch.testing.assert_close(terms["ce_d8"], F.cross_entropy(sub, y))
    tau = 3.0
    kl = F.kl_div(F.log_softmax(sub / tau, 1), F.log_softmax(logits / tau, 1), reduction="batchmean", log_target=True)
    torch.testing.assert_close(terms["kl_d8"], tau**2 * kl)
    at = sum(attention_transfer(s, features[n]) for s, n in zip(stages, ("layer1", "layer2", "layer3"), strict=True))
    torch.testing.assert_close(terms["at_d8"], 500.0 * at)


def test_condition_b_and_c_drop_their_terms():
    net, (x, y) = _net(), _batch()
    method, _, _, terms = _terms(net, {"kl_weight": 0.0, "attention": "none"}, x, y)
    assert set(terms) == {"ce", "ce_d8", "ce_d14"} and method.student_layers == ()
    _, _, _, terms = _terms(net, {"attention": "none", "depths": [8]}, x, y)
    assert set(terms) == {"ce", "ce_d8", "kl_d8"}
    _, _, _, terms = _terms(net, {"attention": "sad"}, x, y)
    assert "at_d14" in terms and float(terms["at_d14"].detach()) > 0


def _grads(mutual: bool):
    net, (x, y) = _net(), _batch()
    _, logits, features, terms = _terms(net, {"mutual": mutual}, x, y)
    distill = sum(v for k, v in terms.items() if k.startswith(("kl_", "at_")))
    distill.backward()
    only_full = [p.grad for p in net.layer1[2].parameters()]  # block 3 of stage 1 runs in the full net only
    return logits.grad, [f.grad for f in features.values()], only_full, net.conv1.weight.grad


def test_one_way_distillation_gives_the_full_net_no_gradient():
    logits_grad, feature_grads, only_full, stem = _grads(mutual=False)
    assert logits_grad is None and all(g is None for g in feature_grads)
    assert all(g is None for g in only_full)
    assert stem is not None and stem.abs().sum() > 0  # the shared stem still learns through the sub-nets


def test_mutual_distillation_pulls_the_full_net_too():
    logits_grad, feature_grads, only_full, _ = _grads(mutual=True)
    assert logits_grad is not None and logits_grad.abs().sum() > 0
    assert all(g is not None and g.abs().sum() > 0 for g in feature_grads)
    assert all(g is not None and g.abs().sum() > 0 for g in only_full)


def test_bad_students_and_settings():
    with pytest.raises(ConfigError, match="depth-switchable student"):
        build_method("ekd", {}, MethodContext(MODELS.get("cnn")(**DATA), None, 10))
    net = _net()
    with pytest.raises(ConfigError, match="at least one sub-net"):
        build_method("ekd", {"depths": [20]}, MethodContext(net, None, 10))
    with pytest.raises(ConfigError, match="available depths: 8, 14, 20"):
        build_method("ekd", {"depths": [9]}, MethodContext(net, None, 10))
    with pytest.raises(ConfigError, match="must be ≥ 0"):
        build_method("ekd", {"kl_weight": -1.0}, MethodContext(net, None, 10))
