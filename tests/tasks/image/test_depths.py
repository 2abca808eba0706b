"""Exporting one depth as a plain network, and the per-depth figures of a trained switchable model."""

import json

import pytest
import torch

from kdlab.cli import main
from kdlab.data.base import DataInfo
from kdlab.models import MODELS, count_macs, count_parameters
from kdlab.models.files import load_model_file
from kdlab.tasks.image.depths import depth_figures, export, export_gap

SIZE = 12  # small images keep VGG-19 and ResNet-34 fast
INFO = DataInfo("toy", 10, 1, (SIZE, SIZE), (0.3,), (0.35,))
DATA = {"num_classes": 10, "in_channels": 1, "image_size": (28, 28), "mean": (0.3,), "std": (0.35,)}
FAMILIES = [
    ("ddnn_resnet", {"depths": (8, 14, 20), "width": 4, "stem_width": 4}, "resnet"),
    (
        "ddnn_resnet",
        {"budgets": {6: [1, 1, 2], 20: [3, 3, 3]}, "width": 4, "stem_width": 4, "keep": "uniform"},
        "resnet",
    ),
    ("ddnn_resnet_basic", {"width": 4}, "resnet_basic"),
    ("ddnn_vgg", {"depths": (8, 11)}, "vgg"),
]


def _trained_like(model: torch.nn.Module) -> None:
    """A few train-mode passes at every depth (moving statistics away from their initial values)."""
    model.train()
    with torch.no_grad():
        for depth in model.depths:
            for _ in range(2):
                model(torch.rand(8, 1, SIZE, SIZE), depth=depth)
    if model.bn == "recalibrated":
        model.recalibrate([torch.rand(16, 1, SIZE, SIZE)])


@pytest.mark.parametrize("bn", ["shared", "private", "recalibrated"])
@pytest.mark.parametrize("family, options, plain_name", FAMILIES)
def test_export_equals_the_switchable_model_at_every_depth(family, options, plain_name, bn):
    torch.manual_seed(0)
    model = MODELS.get(family)(**DATA, bn=bn, **options)
    _trained_like(model)
    x = torch.rand(4, 1, SIZE, SIZE)
    for depth in model.depths:
        plain, spec = export(model, depth, INFO)
        assert spec.name == plain_name and type(plain).__name__ in ("CifarResNet", "VGG")
        assert export_gap(model, plain, depth, x) <= 1e-5
        with model.at_depth(depth):
            assert count_macs(plain, (1, SIZE, SIZE)) == count_macs(model, (1, SIZE, SIZE))


def test_exported_sizes_are_the_zoo_models():
    model = MODELS.get("ddnn_resnet")(**DATA, depths=(8, 14, 20), width=16)
    plain, _ = export(model, 8, INFO)
    zoo = MODELS.get("resnet8")(**DATA)
    assert count_parameters(plain) == count_parameters(zoo) and count_macs(plain, (1, 28, 28)) == count_macs(
        zoo, (1, 28, 28)
    )


def _batches(n: int, seed: int):
    from kdlab.core.batch import Batch

    g = torch.Generator().manual_seed(seed)
    return [Batch(torch.rand(n, 1, SIZE, SIZE, generator=g), torch.randint(0, 10, (n,), generator=g), torch.arange(n))]


def test_depth_figures_recalibrate_and_measure_every_depth():
    torch.manual_seed(0)
    model = MODELS.get("ddnn_resnet")(**DATA, depths=(8, 14), width=4, stem_width=4, recalibration_images=16)
    _trained_like(model)
    figures = depth_figures(model, lambda: _batches(32, 1), INFO, torch.device("cpu"), calibration=_batches(64, 2))
    assert list(figures) == ["8", "14"]
    assert figures["14"]["full_agreement"] == 1.0 and "accuracy_full_bn" not in figures["14"]
    assert "accuracy_full_bn" in figures["8"] and figures["8"]["blocks"] == [1, 1, 1]
    assert figures["8"]["parameters"] < figures["14"]["parameters"] and figures["8"]["macs"] < figures["14"]["macs"]
    assert figures["8"]["latency_ms"] > 0
    assert int(model.norm1.seen_d8) == 1  # calibrated on the first 16 images only (one batch)


def test_train_ekd_then_export_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "ekd"
    args = [
        "train",
        "data.name=digits",
        "student.name=ddnn_resnet",
        "student.depths=[8,14]",
        "student.width=4",
        "student.stem_width=4",
        "method=ekd",
        "epochs=1",
        f"name={run.name}",
        f"runs_dir={tmp_path}",
        "--quiet",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "per depth" in out and "agr. full net %" in out
    summary = json.loads((run / "summary.json").read_text())
    depths = summary["student"]["depths"]
    assert set(depths) == {"8", "14"} and summary["student"]["test"]["accuracy"] == depths["14"]["accuracy"]
    assert main(["export", str(run), "depth=8"]) == 0
    plain, record = load_model_file(run / "depth8.pt")
    assert record["model"] == {"name": "resnet", "options": {"width": 4, "stem_width": 4, "blocks": [1, 1, 1]}}
    assert record["metrics"]["accuracy"] == depths["8"]["accuracy"]
    switchable, _ = load_model_file(run / "model.pt")
    x = torch.rand(5, 1, 8, 8)
    assert export_gap(switchable, plain, 8, x) == 0.0
    assert main(["export", str(run), "depth=9"]) == 2
    assert "available depths: 8, 14" in capsys.readouterr().err
    assert main(["export", str(run), "9"]) == 2
    assert main(["export", str(tmp_path / "missing"), "depth=8"]) == 2


def test_the_python_api_trains_a_users_switchable_model_with_ekd(tmp_path):
    import kdlab

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, 1, SIZE, SIZE, generator=g), torch.randint(0, 3, (96,), generator=g)
    model = MODELS.get("ddnn_resnet")(num_classes=3, in_channels=1, depths=(8, 14), width=4, stem_width=4)
    test = (x[:32], y[:32])
    result = kdlab.train(model, (x, y), test=test, method="ekd", epochs=1, runs_dir=tmp_path, progress=False)
    depths = result.metrics["student"]["depths"]
    assert set(depths) == {"8", "14"} and "accuracy_full_bn" in depths["8"]
    assert any(k.startswith("kl_d8") for k in result.history[-1]["train"])
