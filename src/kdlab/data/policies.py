"""Training-time augmentation settings and the named policies of Stanton et al. (2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation (the policies of Stanton et al. 2021, App. A.1), applied in this order:
    random crop after zero ``crop`` padding; horizontal ``flip``; vertical ``vflip``; ``rotation`` by an
    angle uniform in ±degrees; ``brightness``/``contrast`` factors uniform in [1 − s, 1 + s]; ``mixup`` or
    ``cutmix`` with λ ~ Beta(α, α) (α = 0: off; one λ per batch); then each image is replaced with
    probability ``noise`` by uniform noise (an unlabelled example). Labels are mixed by the label loss,
    not here; a teacher labels exactly the resulting pixels."""

    crop: int = 0
    flip: bool = False
    vflip: bool = False
    rotation: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    noise: float = 0.0

    @property
    def active(self) -> bool:
        return any(
            (self.crop > 0, self.flip, self.vflip, self.rotation > 0, self.brightness > 0, self.contrast > 0)
        ) or any((self.mixup > 0, self.cutmix > 0, self.noise > 0))

    def check(self) -> None:
        """Raise ``ValueError`` naming the first impossible setting."""
        if self.mixup > 0 and self.cutmix > 0:
            raise ValueError(f"choose mixup or cutmix, not both (mixup={self.mixup}, cutmix={self.cutmix})")
        for name in ("crop", "rotation", "brightness", "contrast", "mixup", "cutmix", "noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be ≥ 0, got {getattr(self, name)}")
        for name in ("brightness", "contrast", "noise"):
            if getattr(self, name) > 1:
                raise ValueError(f"augment.{name} must lie in [0, 1], got {getattr(self, name)}")


_BASELINE: dict[str, Any] = {"crop": 4, "flip": True}
POLICIES: dict[str, dict[str, Any]] = {
    "none": {},
    "baseline": _BASELINE,
    "rotation": {**_BASELINE, "rotation": 20.0},
    "vflip": {**_BASELINE, "vflip": True},
    "jitter": {**_BASELINE, "brightness": 0.2, "contrast": 0.2},
    "combined": {**_BASELINE, "rotation": 20.0, "vflip": True, "brightness": 0.2, "contrast": 0.2},
    "mixup": {**_BASELINE, "mixup": 1.0},
    "cutmix": {**_BASELINE, "cutmix": 1.0},
    "noise": {**_BASELINE, "noise": 0.2},
}
"""Named augmentation policies (Stanton et al. 2021, App. A.1): crop with 4-pixel padding + horizontal flip
as the baseline, rotation ±20°, vertical flip, brightness/contrast jitter 0.2, all three combined,
mixup and cutmix with α = 1 (λ uniform), and uniform-noise images with probability 0.2."""
