"""Colour- and texture-background domains of a grayscale data set (Ojha et al. 2023, §5.1, procedurally).

The paper's teacher sees MNIST, MNIST-Color (random background colour) and MNIST-M (digits on natural-image
patches); its students see MNIST only. Without downloads, ``texture`` puts the object on smooth random
noise (low-frequency noise upsampled, one colour per channel) as a stand-in for MNIST-M's photo patches.
Every variant is RGB; the object keeps its grey level, painted over the background by its own intensity.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from kdlab.core.errors import ConfigError
from kdlab.data.base import DATASETS, IMAGES, DataInfo, ImageData
from kdlab.data.stats import uint8_pixel_stats

Domain = Literal["orig", "color", "texture"]
DOMAINS: tuple[str, ...] = ("orig", "color", "texture")


def _background(kind: str, n: int, size: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    if kind == "color":
        return torch.rand(n, 3, 1, 1, generator=g).expand(n, 3, *size)
    coarse = torch.rand(n, 3, 4, 4, generator=g)  # texture: smooth noise, 4×4 cells upsampled
    return F.interpolate(coarse, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def to_domain(x: torch.Tensor, domain: str, seed: int = 0) -> torch.Tensor:
    """uint8 grayscale images ``[N, 1, H, W]`` → uint8 RGB ``[N, 3, H, W]`` in ``domain`` (orig: grey on
    black; color: a random background colour per image; texture: a random smooth texture per image)."""
    if domain not in DOMAINS:
        raise ConfigError(f"Unknown domain {domain!r}; valid domains: {', '.join(DOMAINS)}.")
    if x.dim() != 4 or x.shape[1] != 1:
        raise ConfigError(f"Domain variants start from grayscale [N, 1, H, W] images, got {tuple(x.shape)}.")
    grey = x.float().div(255).expand(-1, 3, -1, -1)
    if domain == "orig":
        out = grey
    else:
        g = torch.Generator().manual_seed(seed)
        background = _background(domain, len(x), tuple(x.shape[-2:]), g)
        out = grey * grey + (1 - grey) * background  # the object's intensity decides how much of it covers
    return out.mul(255).round().clamp(0, 255).to(torch.uint8)


def domain_seed(domain: str, seed: int, split: str) -> int:
    """Each domain and split gets its own backgrounds, reproducibly."""
    return seed + 1_000 * DOMAINS.index(domain) + (1 if split == "test" else 0)


def domain_test_sets(base: str, seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The test split of ``base`` in every domain, exactly as the ``domains`` data set renders it."""
    from kdlab.data import load_dataset

    data = load_dataset(base)
    return {d: (to_domain(data.test_x, d, domain_seed(d, seed, "test")), data.test_y) for d in DOMAINS}


@DATASETS.register("domains", tasks=IMAGES)
def domains(base: str = "mnist", domains: str = "orig,color,texture", seed: int = 0) -> ImageData:
    """Data set ``base`` (grayscale) rendered in the listed domains, concatenated (train and test alike);
    labels repeat per domain. ``domains=orig`` gives the orig-only RGB set students train on."""
    from kdlab.data import load_dataset  # the registry lives in the package that imports this module

    chosen = [d.strip() for d in domains.split(",") if d.strip()]
    unknown = [d for d in chosen if d not in DOMAINS]
    if not chosen or unknown:
        raise ConfigError(f"data.domains={domains!r}: valid domains are {', '.join(DOMAINS)} (comma-separated).")
    data = load_dataset(base)
    if data.info.in_channels != 1:
        raise ConfigError(
            f"Domain variants need a grayscale base data set; {base!r} has {data.info.in_channels} channels."
        )
    train_x = torch.cat([to_domain(data.train_x, d, domain_seed(d, seed, "train")) for d in chosen])
    test_x = torch.cat([to_domain(data.test_x, d, domain_seed(d, seed, "test")) for d in chosen])
    train_y, test_y = data.train_y.repeat(len(chosen)), data.test_y.repeat(len(chosen))
    mean, std = uint8_pixel_stats(train_x)
    info = DataInfo(
        f"{base}-{'+'.join(chosen)}", data.info.num_classes, 3, data.info.image_size, mean, std, data.info.classes
    )
    return ImageData(info, train_x, train_y, test_x, test_y)
