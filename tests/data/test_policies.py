import pytest
import torch

from kdlab.cache.select import online as online_teacher
from kdlab.core.errors import ConfigError
from kdlab.data.augment import cutmix, cutmix_box, jitter, rotate, vertical_flip
from kdlab.data.loader import TensorLoader
from kdlab.data.policies import POLICIES, Augment
from kdlab.pipeline.config import build_augment
from kdlab.training.teachers import Teacher


def images(n: int = 6, c: int = 1, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def uint8_data(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8), torch.arange(n) % 4


def test_rotation_by_zero_is_the_identity_and_by_ninety_degrees_a_quarter_turn():
    x = images()
    assert torch.allclose(rotate(x, torch.zeros(6)), x, atol=1e-6)
    turned = rotate(x, torch.full((6,), 90.0))
    assert torch.allclose(turned, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5) or torch.allclose(
        turned, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-5
    )
    mixed = rotate(x, torch.tensor([0.0, 90.0, 0.0, 90.0, 0.0, 0.0]))
    assert torch.allclose(mixed[0], x[0], atol=1e-6) and not torch.allclose(mixed[1], x[1], atol=1e-3)


def test_vertical_flip_only_touches_flagged_images():
    x = images()
    flags = torch.tensor([True, False, True, False, False, False])
    out = vertical_flip(x, flags)
    assert torch.equal(out[0], x[0].flip(-2)) and torch.equal(out[1], x[1])


def test_jitter_identity_factors_and_zero_contrast():
    x = images()
    assert torch.allclose(jitter(x, torch.ones(6), torch.ones(6)), x)
    flat = jitter(x, torch.ones(6), torch.zeros(6))
    assert torch.allclose(flat, x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x))
    bright = jitter(x, torch.full((6,), 1.5), torch.ones(6))
    assert bright.max() <= 1.0 and torch.allclose(bright, (x * 1.5).clamp(0, 1), atol=1e-6)


@pytest.mark.parametrize(("lam", "centre"), [(0.5, (0.5, 0.5)), (0.3, (0.0, 0.9)), (0.9, (1.0, 0.2))])
def test_cutmix_box_reports_the_share_of_pixels_it_really_keeps(lam, centre):
    box, kept = cutmix_box(lam, 32, 32, centre)
    x, other = torch.zeros(1, 1, 32, 32), torch.ones(1, 1, 32, 32)
    both = torch.cat([x, other])
    out = cutmix(both, box, torch.tensor([1, 0]))
    assert 1.0 - out[0].mean().item() == pytest.approx(kept)
    if centre == (0.5, 0.5):
        assert kept == pytest.approx(lam, abs=0.03)  # up to the rounding of the box to whole pixels


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_policy_replays_exactly_and_resumes_mid_epoch(policy):
    x, y = uint8_data()
    aug = build_augment(policy)
    a = TensorLoader(x, y, 8, shuffle=True, augment=aug, seed=2)
    b = TensorLoader(x, y, 8, shuffle=True, augment=aug, seed=2)
    first, again = list(a.epoch(1)), list(b.epoch(1, start=2))
    for u, v in zip(first[2:], again, strict=True):
        assert torch.equal(u.x, v.x) and torch.equal(u.y, v.y) and u.extras.mix_lambda == v.extras.mix_lambda
    assert all(u.x.min() >= 0.0 and u.x.max() <= 1.0 for u in first)
    changed = any(not torch.equal(u.x, x[u.index].float() / 255) for u in first)
    assert changed == (policy != "none")


def test_noise_images_are_uniform_and_unlabelled():
    x, y = uint8_data(400)
    loader = TensorLoader(x, y, 400, shuffle=False, augment=Augment(noise=0.25), seed=0)
    batch = next(loader.epoch(0))
    noisy = batch.y == -1
    assert 60 < noisy.sum() < 140
    clean = x[batch.index].float() / 255
    assert torch.equal(batch.x[~noisy], clean[~noisy]) and not torch.equal(batch.x[noisy], clean[noisy])
    assert batch.x[noisy].mean().item() == pytest.approx(0.5, abs=0.02)


def test_cutmix_batches_carry_the_kept_share_for_the_label_loss():
    x, y = uint8_data()
    batch = next(TensorLoader(x, y, 8, shuffle=True, augment=Augment(cutmix=1.0), seed=0).epoch(0))
    assert batch.extras.mix_perm is not None and 0.0 <= batch.extras.mix_lambda <= 1.0
    clean = x[batch.index].float() / 255
    same = (batch.x == clean).float().mean(dim=(1, 2, 3))
    moved = batch.extras.mix_perm != torch.arange(8)
    assert torch.allclose(same[moved], torch.full_like(same[moved], batch.extras.mix_lambda), atol=0.1)


def test_the_teacher_labels_the_mixed_pixels_the_student_sees():
    x, y = uint8_data()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    teacher = Teacher([net])
    batch = next(TensorLoader(x, y, 8, shuffle=True, augment=Augment(mixup=1.0), seed=0).epoch(0))
    clean = x[batch.index].float() / 255
    expected = batch.extras.mix_lambda * clean + (1 - batch.extras.mix_lambda) * clean[batch.extras.mix_perm]
    assert torch.allclose(batch.x, expected)
    with torch.no_grad():
        assert torch.allclose(online_teacher(teacher)(batch).logits, net(expected), atol=1e-6)


@pytest.mark.parametrize(
    ("value", "needle"),
    [("combo", "Did you mean 'combined'"), ({"mixup": 1, "cutmix": 1}, "mixup or cutmix"), ({"noise": 1.5}, "[0, 1]")],
)
def test_bad_augmentation_is_a_config_error(value, needle):
    with pytest.raises(ConfigError, match=None) as info:
        build_augment(value)
    assert needle in str(info.value)


def test_a_policy_with_overrides():
    aug = build_augment({"policy": "baseline", "mixup": 0.5})
    assert (aug.crop, aug.flip, aug.mixup) == (4, True, 0.5) and aug.active and not Augment().active
