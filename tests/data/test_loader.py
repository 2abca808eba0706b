import pytest
import torch
import torch.nn.functional as F

from kdlab.data.loader import TensorLoader
from kdlab.data.policies import Augment
from kdlab.pipeline.config import DataConfig
from kdlab.tasks.image.sources import config_sources


def data(n: int = 37) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 2, 6, 5), generator=g, dtype=torch.uint8), torch.arange(n) % 3


def batches(loader: TensorLoader, epoch: int, start: int = 0) -> list:
    return list(loader.epoch(epoch, start))


def test_each_example_once_per_epoch_as_floats_in_unit_range():
    x, y = data()
    loader = TensorLoader(x, y, 8, shuffle=True, seed=1)
    out = batches(loader, 0)
    assert len(out) == len(loader) == 5 and [len(b) for b in out] == [8, 8, 8, 8, 5]
    index = torch.cat([b.index for b in out])
    assert sorted(index.tolist()) == list(range(37))
    for b in out:
        assert (
            b.x.dtype == torch.float32 and torch.equal(b.x, x[b.index].float() / 255) and torch.equal(b.y, y[b.index])
        )


def test_plan_depends_only_on_seed_and_epoch_and_start_resumes_exactly():
    x, y = data()
    aug = Augment(crop=2, flip=True, mixup=0.4)
    a = TensorLoader(x, y, 8, shuffle=True, augment=aug, seed=3)
    b = TensorLoader(x, y, 8, shuffle=True, augment=aug, seed=3)
    first, again = batches(a, 2), batches(b, 2)
    for u, v in zip(first, again, strict=True):
        assert torch.equal(u.x, v.x) and torch.equal(u.index, v.index) and u.extras.mix_lambda == v.extras.mix_lambda
    tail = batches(a, 2, start=3)
    for u, v in zip(first[3:], tail, strict=True):
        assert torch.equal(u.x, v.x) and torch.equal(u.extras.mix_perm, v.extras.mix_perm)
    assert not torch.equal(batches(a, 3)[0].index, first[0].index)


def test_random_crop_and_flip_match_a_per_image_reference():
    x, y = data(9)
    loader = TensorLoader(x, y, 9, augment=Augment(crop=2, flip=True), seed=0)
    plan = loader.plan(0)
    (batch,) = batches(loader, 0)
    padded = F.pad(x.float() / 255, (2, 2, 2, 2))
    for i in range(9):
        dy, dx = plan.offsets[i].tolist()
        expected = padded[i, :, dy : dy + 6, dx : dx + 5]
        if plan.flips[i]:
            expected = expected.flip(-1)
        assert torch.equal(batch.x[i], expected)
    assert plan.flips.any() and not plan.flips.all()


def test_mixup_mixes_images_with_one_lambda_per_batch():
    x, y = data(16)
    loader = TensorLoader(x, y, 8, shuffle=True, augment=Augment(mixup=1.0), seed=0)
    for b in batches(loader, 0):
        clean = x[b.index].float() / 255
        assert 0 < b.extras.mix_lambda < 1 and sorted(b.extras.mix_perm.tolist()) == list(range(8))
        assert torch.allclose(b.x, b.extras.mix_lambda * clean + (1 - b.extras.mix_lambda) * clean[b.extras.mix_perm])


def test_fashion_mnist_split_is_stratified_and_disjoint(fashion_mnist_available):
    sources = config_sources(DataConfig(name="fashion_mnist", val_fraction=0.1, split_seed=0), torch.device("cpu"))
    train, val, test = sources.train_eval, sources.val, sources.test
    assert (len(train.x), len(val.x), len(test.x)) == (54000, 6000, 10000)
    assert torch.bincount(val.y).tolist() == [600] * 10
    batch = next(sources.make_train(0).epoch(0))
    assert batch.x.shape == (128, 1, 28, 28) and batch.x.min() >= 0 and batch.x.max() <= 1
    # disjoint: no validation image appears in the training split
    train_keys = {bytes(row) for row in train.x.flatten(1).numpy()}
    assert not any(bytes(row) in train_keys for row in val.x[:500].flatten(1).numpy())


def test_digits_loader():
    pytest.importorskip("sklearn")
    sources = config_sources(DataConfig(name="digits", val_fraction=0.2, batch_size=64), torch.device("cpu"))
    assert sources.info.num_classes == 10 and sources.info.image_size == (8, 8)
    total = len(sources.train_eval.x) + len(sources.val.x) + len(sources.test.x)
    assert total == 1797
    assert sum(len(b) for b in sources.make_train(0).epoch(0)) == len(sources.train_eval.x)
