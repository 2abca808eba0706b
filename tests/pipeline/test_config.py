import pytest

from kdlab.core.errors import ConfigError
from kdlab.pipeline import config as cfg


def test_overrides_reach_sections_and_convert_types():
    c = cfg.load(
        None,
        [
            "student=resnet8",
            "student.norm=layer",
            "optim.lr=1e-3",
            "seeds=0,1,2",
            "data.root=/x",
            "data.augment.crop=2",
            "data.augment.flip=true",
            "method.temperature=2",
            "epochs=3",
            "teacher=runs/a,runs/b",
        ],
    )
    assert c.student.name == "resnet8" and c.student.options == {"norm": "layer"}
    assert c.optim.lr == pytest.approx(1e-3) and c.seeds == [0, 1, 2] and c.epochs == 3
    assert c.data.options == {"root": "/x"} and c.data.augment.crop == 2 and c.data.augment.flip is True
    assert c.method.name == "kd" and c.method.params == {"temperature": 2}
    assert c.teacher == ["runs/a", "runs/b"]


def test_seed_alias_and_shorthand_sections():
    c = cfg.resolve({"seed": 4, "method": "ce", "student": "mlp", "teacher": "pretrained:x"})
    assert c.seeds == [4] and c.method.name == "ce" and c.student.name == "mlp" and c.teacher == ["pretrained:x"]


def test_mapping_round_trip():
    c = cfg.load(None, ["student.width=16", "data.augment.mixup=0.5", "optim.betas=0.8,0.9", "data.download=true"])
    assert cfg.resolve(cfg.to_mapping(c)) == c
    assert cfg.config_hash(c) == cfg.config_hash(cfg.resolve(cfg.to_mapping(c)))
    assert cfg.config_hash(c) != cfg.config_hash(cfg.load(None, ["student.width=32"]))


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("optim.lr=abc", "optim.lr expects a number; got 'abc'"),
        ("epochs=1.5", "epochs expects an integer"),
        ("optim.name=adam", "Did you mean 'adamw'"),
        ("optim.nam=sgd", "Unknown key optim.nam"),
        ("epohcs=3", "Did you mean 'epochs'"),
        ("data.augment.flip=maybe", "data.augment.flip expects true or false"),
        ("epochs=0", "epochs must be ≥ 1"),
        ("lr", "not of the form key=value"),
        ("optim.schedule=step", "needs optim.milestones"),
    ],
)
def test_bad_values_are_named_with_what_is_valid(override, needle):
    with pytest.raises(ConfigError) as err:
        cfg.load(None, [override])
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_presets_and_missing_config():
    assert cfg.load("fashion_mnist_kd").independent is True
    with pytest.raises(ConfigError, match="neither a file nor a preset"):
        cfg.load("no_such_preset")


def test_yaml_file_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {name: digits, batch_size: 32}\nstudent: {name: cnn, width: 4}\nepochs: 2\n")
    c = cfg.load(path, ["epochs=5"])
    assert c.data.name == "digits" and c.data.batch_size == 32 and c.student.options == {"width": 4} and c.epochs == 5
    path.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        cfg.load(path)
