import math

import pytest
import torch

from kdlab.cli import main
from kdlab.core.batch import Batch
from kdlab.core.outputs import ModelOutput
from kdlab.data.distillation import conform, per_example_temperature, resolve_temperature, unlabel_all_but
from kdlab.data.loader import ImageExtras
from kdlab.losses import kd
from kdlab.methods import MethodContext, build_method
from kdlab.pipeline.config import DataConfig, load, resolve, to_mapping
from kdlab.tasks.image.sources import config_sources


def test_conform_resizes_and_maps_channels():
    grey = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    big = conform(grey, 1, (28, 28))
    assert big.shape == (3, 1, 28, 28) and big.dtype == torch.uint8
    assert abs(big.float().mean() - grey.float().mean()) < 3
    colour = conform(grey, 3, (8, 8))
    assert colour.shape == (3, 3, 8, 8) and torch.equal(colour[:, 1], grey[:, 0])
    rgb = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(conform(rgb, 1, (8, 8))[:, 0], rgb.float().mean(1).round().to(torch.uint8))


def test_unlabel_all_but_keeps_a_stratified_subset_of_labels():
    y = torch.arange(100) % 4
    kept = unlabel_all_but(y, 20, seed=0)
    labelled = kept >= 0
    assert labelled.sum() == 20 and torch.equal(kept[labelled], y[labelled])
    assert torch.bincount(kept[labelled], minlength=4).tolist() == [5, 5, 5, 5]
    assert torch.equal(unlabel_all_but(y, 20, seed=0), kept) and not torch.equal(unlabel_all_but(y, 20, seed=1), kept)


def test_per_example_temperatures_mark_the_method_default_with_nan():
    assert per_example_temperature([3, 2], [None, None]) is None
    tau = per_example_temperature([3, 2], [None, 1.0])
    assert torch.isnan(tau[:3]).all() and tau[3:].tolist() == [1.0, 1.0]
    assert resolve_temperature(None, 4.0) == 4.0
    assert resolve_temperature(tau, 4.0).view(-1).tolist() == [4.0, 4.0, 4.0, 1.0, 1.0]


def synthetic_config(**data) -> DataConfig:
    return resolve({"data": {"name": "synthetic", "val_fraction": 0.0, **data}}).data


def test_extra_sources_join_the_training_set_unlabelled_with_their_temperature():
    cfg = synthetic_config(labelled=40, extra=[{"name": "digits", "size": 100, "temperature": 1.0}])
    sources = config_sources(cfg, torch.device("cpu"))
    assert sources.num_train == 512 + 100 and sources.source_temperatures
    batches = list(sources.make_train(0).epoch(0))
    x = torch.cat([b.x for b in batches])
    y, index = torch.cat([b.y for b in batches]), torch.cat([b.index for b in batches])
    tau = torch.cat([b.extras.temperature for b in batches])
    assert x.shape[1:] == (1, 8, 8)
    extra = index >= 512
    assert (y[extra] == -1).all() and (tau[extra] == 1.0).all() and torch.isnan(tau[~extra]).all()
    assert (y[~extra] >= 0).sum() == 40


def test_per_source_temperatures_reach_the_kd_loss():
    torch.manual_seed(0)
    s, t = torch.randn(6, 5), torch.randn(6, 5)
    tau = torch.tensor([float("nan")] * 3 + [1.0] * 3)
    extras = ImageExtras(temperature=tau)
    batch = Batch(x=torch.zeros(6, 1), y=torch.full((6,), -1), index=torch.arange(6), extras=extras)
    method = build_method("kd", {"temperature": 4.0}, MethodContext(torch.nn.Identity(), None, 5))
    got = method(ModelOutput(logits=s), ModelOutput(logits=t), batch)["kd"]
    expected = (kd(s[:3], t[:3], 4.0) + kd(s[3:], t[3:], 1.0)) / 2
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    assert not math.isclose(got.item(), kd(s, t, 4.0).item(), rel_tol=1e-3)


def test_extra_sources_round_trip_through_the_saved_config():
    config = load(None, ["data.extra=digits", "data.labelled=200", "data.augment=mixup"])
    again = resolve(to_mapping(config))
    assert again.data.extra == config.data.extra and again.data.augment == config.data.augment
    assert again.data.labelled == 200


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["data.temperature=2", "method=dkd"], "does not distil at per-source temperatures"),
        (["data.labelled=100000"], "data.labelled=100000"),
        (["data.temperature=0"], "must be > 0"),
    ],
)
def test_source_mistakes_are_one_paragraph_errors(capsys, synthetic_teacher, tmp_path, overrides, needle):
    base = ["distill", f"teacher={synthetic_teacher}", "data=synthetic", "student.width=4", "epochs=1", "--quiet"]
    code = main([*base, f"runs_dir={tmp_path}", *overrides])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err, err


def test_train_agreement_is_also_measured_on_the_augmented_views(synthetic_teacher, tmp_path):
    import kdlab

    common = {"epochs": 1, "runs_dir": tmp_path, "device": "cpu"}
    plain = kdlab.distill(synthetic_teacher, "cnn", "synthetic", **common, name="plain")
    assert "train_views" not in plain.metrics["student"]
    noisy = kdlab.distill(synthetic_teacher, "cnn", "synthetic", augment="combined", **common, name="aug")
    views, train = noisy.metrics["student"]["train_views"], noisy.metrics["student"]["train"]
    assert 0.0 <= views["agreement"] <= 1.0 and views["agreement"] != train["agreement"]
