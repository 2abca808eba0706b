"""Where the batches of an image job come from: the configured data set split into train/val/test, or tensors.

A :class:`Sources` hands out shuffled (and augmented) training batches for a seed, and fixed-order,
unaugmented batches of the training, validation and test splits for evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.data import load_dataset, stratified_split, stratified_subset
from kdlab.data.base import DataInfo
from kdlab.data.distillation import ExtraSource, conform, per_example_temperature, unlabel_all_but
from kdlab.data.loader import TensorLoader
from kdlab.data.policies import Augment
from kdlab.data.views import ViewBank
from kdlab.pipeline.config import DataConfig
from kdlab.training.engine import BatchSource
from kdlab.training.predict import predict_all
from kdlab.training.teachers import Teacher

Split = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Sources:
    info: DataInfo
    make_train: Callable[[int], BatchSource]
    train_eval: BatchSource | None
    val: BatchSource | None
    test: BatchSource | None
    fixed_views: bool  # True when a sample index names the same pixels in every epoch (no augmentation)
    num_train: int = 0  # training examples (memory banks index them)
    source_temperatures: bool = False  # some training examples carry their own distillation τ
    views: ViewBank | None = None  # stored augmented views that training replays (cache.views)
    teacher_loader: Callable[[], TensorLoader] | None = None  # every training image once per view, in index order

    def split(self, name: str) -> BatchSource | None:
        return {"train": self.train_eval, "val": self.val, "test": self.test}[name]


def tensor_sources(
    info: DataInfo,
    train: Split,
    val: Split | None,
    test: Split | None,
    *,
    batch_size: int,
    eval_batch_size: int,
    augment: Augment,
    device: torch.device,
    temperature: torch.Tensor | None = None,
    views: int = 0,
    view_seed: int = 0,
) -> Sources:
    """Sources over in-memory tensors, all of them resident on ``device``; ``temperature`` ``[N]`` is the
    per-example distillation τ of the training images (NaN: the method's). With augmentation, ``views`` = K > 0
    draws K views of every image from ``view_seed`` and training replays them (see :class:`ViewBank`)."""
    x, y = train[0].to(device), train[1].to(device)
    tau = None if temperature is None else temperature.to(device)
    bank = None
    if views > 0 and augment.active:
        try:
            bank = ViewBank.draw(x, augment, views, view_seed)
        except ValueError as exc:
            raise ConfigError(f"cache.views={views}: {exc}.") from None

    def fixed(split: Split | None) -> TensorLoader | None:
        return None if split is None else TensorLoader(*split, eval_batch_size, device=device)

    return Sources(
        info=info,
        make_train=lambda seed: TensorLoader(
            x, y, batch_size, device=device, shuffle=True, augment=augment, seed=seed, temperature=tau, views=bank
        ),
        train_eval=fixed((x, y)),
        val=fixed(val),
        test=fixed(test),
        fixed_views=not augment.active,
        num_train=len(x),
        source_temperatures=temperature is not None,
        views=bank,
        teacher_loader=lambda: TensorLoader(x, y, eval_batch_size, device=device, augment=augment, views=bank),
    )


def config_sources(cfg: DataConfig, device: torch.device, views: int = 0, view_seed: int = 0) -> Sources:
    """Load the configured data set and split it: train/val from the training set by ``split_seed``
    (the test split is never used for any choice), optional stratified subsets; ``views``: see
    :func:`tensor_sources`."""
    data = load_dataset(cfg.name, **cfg.options)
    train_x, train_y, val = data.train_x, data.train_y, None
    if cfg.val_fraction > 0:
        keep, held = stratified_split(train_y, cfg.val_fraction, cfg.split_seed)
        val = (train_x[held], train_y[held])
        train_x, train_y = train_x[keep], train_y[keep]
    if cfg.train_size is not None:
        keep = stratified_subset(train_y, cfg.train_size, cfg.split_seed)
        train_x, train_y = train_x[keep], train_y[keep]
    if cfg.labelled is not None:
        if cfg.labelled > len(train_y):
            raise ConfigError(
                f"data.labelled={cfg.labelled} is more than the {len(train_y)} training images left after the split."
            )
        train_y = unlabel_all_but(train_y, cfg.labelled, cfg.split_seed)
    sizes, temperatures = [len(train_y)], [cfg.temperature]
    for i, extra in enumerate(cfg.extra):
        images = extra_images(extra, data.info, f"data.extra[{i}]")
        train_x, train_y = torch.cat([train_x, images]), torch.cat([train_y, torch.full((len(images),), -1)])
        sizes.append(len(images))
        temperatures.append(extra.temperature)
    test_x, test_y = data.test_x, data.test_y
    if cfg.test_size is not None:
        keep = stratified_subset(test_y, cfg.test_size, cfg.split_seed)
        test_x, test_y = test_x[keep], test_y[keep]
    return tensor_sources(
        data.info,
        (train_x, train_y),
        val,
        (test_x, test_y),
        batch_size=cfg.batch_size,
        eval_batch_size=cfg.eval_batch_size,
        augment=cfg.augment,
        device=device,
        temperature=per_example_temperature(sizes, temperatures),
        views=views,
        view_seed=view_seed,
    )


def extra_images(extra: ExtraSource, info: DataInfo, where: str) -> torch.Tensor:
    """The training images of ``extra`` (labels dropped), ``size`` of them drawn at random by ``seed``,
    brought to the main data set's channels and size."""
    images = load_dataset(extra.name, **extra.options).train_x
    if extra.size is not None:
        if extra.size > len(images):
            raise ConfigError(f"{where}.size={extra.size} but {extra.name!r} has {len(images)} training images.")
        images = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(extra.seed))[: extra.size]]
    return conform(images, info.in_channels, info.image_size)


class TeacherPredictions:
    """The frozen teacher's logits on each fixed split (for evaluation), computed once and shared by every run."""

    def __init__(self, teacher: Teacher, sources: Sources, device: torch.device) -> None:
        self.teacher, self.sources, self.device = teacher, sources, device
        self._logits: dict[str, torch.Tensor] = {}

    def table(self, split: str) -> torch.Tensor | None:
        """Logits ``[N, c]`` indexed by sample index, or None when the split has no fixed order."""
        source = self.sources.split(split)
        if not isinstance(source, TensorLoader):
            return None
        if split not in self._logits:
            self._logits[split] = self._predict(source, lambda b: self.teacher(b.x).logits)
        return self._logits[split]

    def _predict(self, source: TensorLoader, fn: Callable[[Batch], torch.Tensor]) -> torch.Tensor:
        out, _, index = predict_all({"t": fn}, source.epoch(0), self.device)
        table = torch.empty_like(out["t"])
        table[index] = out["t"]
        return table
