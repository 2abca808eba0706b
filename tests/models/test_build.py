import json

import pytest
import torch
from torch import nn

from kdlab.core.errors import CheckpointError, ConfigError
from kdlab.data.base import DataInfo
from kdlab.models.factory import ModelSpec, build_model, check_models
from kdlab.models.files import load_model_file, resolve_model_path, save_model_file, teacher_members
from kdlab.training.teachers import Teacher

INFO = DataInfo("toy", 5, 1, (8, 8), (0.3,), (0.2,))


def test_zoo_model_gets_the_data_shape_and_statistics():
    model = build_model(ModelSpec("cnn", {"width": 4}), INFO)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 5)
    assert torch.allclose(model.normalize.mean.flatten(), torch.tensor([0.3]))


def test_callable_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "user_models.py").write_text(
        "import torch.nn as nn\n"
        "def tiny(num_classes, hidden=3):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_model(ModelSpec("user_models:tiny", {"hidden": 7}), INFO)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 5) and model[1].out_features == 7
    with pytest.raises(ConfigError, match="has no option 'width'"):
        build_model(ModelSpec("user_models:tiny", {"width": 7}), INFO)
    with pytest.raises(ConfigError, match="Cannot import model 'user_models:nope'"):
        build_model(ModelSpec("user_models:nope"), INFO)


def test_model_file_round_trip_and_raw_state_dict(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelSpec("resnet8", {"norm": "layer"}), INFO).eval()
    save_model_file(tmp_path / "model.pt", model, ModelSpec("resnet8", {"norm": "layer"}), INFO, {"accuracy": 0.5})
    loaded, record = load_model_file(tmp_path / "model.pt")
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(loaded.eval()(x), model(x)) and record["metrics"] == {"accuracy": 0.5}
    torch.save(model.state_dict(), tmp_path / "raw.pt")
    (member,) = teacher_members([{"name": "resnet8", "norm": "layer", "checkpoint": str(tmp_path / "raw.pt")}], INFO)
    assert torch.equal(member.eval()(x), model(x))
    with pytest.raises(CheckpointError, match="not a kdlab model file"):
        load_model_file(tmp_path / "raw.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        teacher_members([{"name": "resnet14", "checkpoint": str(tmp_path / "raw.pt")}], INFO)


def test_truncated_model_file(tmp_path):
    save_model_file(tmp_path / "m.pt", nn.Linear(2, 2), ModelSpec("mlp"), INFO)
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[:100])
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        load_model_file(tmp_path / "m.pt")


def test_group_folder_resolves_to_its_seeds(tmp_path):
    for seed in (0, 1):
        (tmp_path / f"seed{seed}").mkdir()
        save_model_file(
            tmp_path / f"seed{seed}" / "model.pt", build_model(ModelSpec("mlp"), INFO), ModelSpec("mlp"), INFO
        )
    members = [
        {"name": "seed0", "role": "main"},
        {"name": "seed1", "role": "main"},
        {"name": "independent-seed0", "role": "independent"},
    ]
    (tmp_path / "group.json").write_text(json.dumps({"members": members}))
    assert resolve_model_path(str(tmp_path)) == [tmp_path / "seed0" / "model.pt", tmp_path / "seed1" / "model.pt"]
    with pytest.raises(ConfigError, match="Unknown pretrained model 'nope'"):
        resolve_model_path("pretrained:nope")


def test_teacher_class_count_and_input_shape_are_checked():
    teacher = Teacher(build_model(ModelSpec("mlp"), DataInfo("other", 3, 1, (8, 8), (0.5,), (0.5,))))
    with pytest.raises(ConfigError, match=r"outputs of shape \(2, 3\) for a batch of 2, but the data set 'toy' has 5"):
        check_models(list(teacher.members), INFO, torch.device("cpu"), role="Teacher")
    teacher = Teacher(build_model(ModelSpec("mlp"), DataInfo("rgb", 5, 3, (8, 8), (0.5,) * 3, (0.5,) * 3)))
    with pytest.raises(ConfigError, match="cannot take toy images of shape"):
        check_models(list(teacher.members), INFO, torch.device("cpu"), role="Teacher")
