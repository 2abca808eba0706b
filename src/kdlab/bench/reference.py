"""The reference: a KD training loop written the way the classic repositories write it (RepDistiller's
``train_distill``, mdistiller's trainer), to measure kdlab against on the same pair, batch and optimiser.

What makes it classic — and what it costs:

- a ``Dataset`` that turns one image at a time into a normalised float tensor (torchvision's ``ToTensor`` +
  ``Normalize``), batched by a ``DataLoader`` with the default collate (0 workers on the CPU, up to 8 on a GPU,
  as RepDistiller's ``--num_workers 8``), and copied to the device batch by batch;
- the teacher run online on every batch, in eval mode under ``torch.no_grad()``;
- ``KLDivLoss(batchmean)`` between the tempered log-softmax of the student and the tempered softmax of the
  teacher, times τ², plus the label cross-entropy weighted as kdlab's ``kd`` method weighs it;
- ``loss.item()`` and the accuracy read on the host after every step; plain SGD; float32; NCHW;
  ``cudnn.benchmark`` on, as RepDistiller sets it.

The models are the pair's own; only their input normalisation moves into the ``Dataset``, where the classic
pipelines put it, so the pixels a model sees are the same as under kdlab.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdlab.bench.timing import no_phase
from kdlab.models.common import Normalize
from kdlab.training.engine import Phases
from kdlab.training.optim import OptimConfig

MAX_WORKERS = 8


class PerSampleImages(Dataset[tuple[torch.Tensor, int]]):
    """uint8 images ``[N, C, H, W]`` on the host, converted and normalised one sample per ``__getitem__``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> None:
        self.images, self.labels = images, labels
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index].float().div(255.0)
        return (image - self.mean) / self.std, int(self.labels[index])


def without_normalize(model: nn.Module, dataset: PerSampleImages) -> nn.Module:
    """A copy of a zoo model in NCHW whose own input normalisation, which must be the one ``dataset`` applies, is
    replaced by the identity."""
    own = getattr(model, "normalize", None)
    same = (
        isinstance(own, Normalize)
        and own.mean is not None
        and own.std is not None
        and torch.allclose(own.mean.flatten().cpu(), dataset.mean.flatten())
        and torch.allclose(own.std.flatten().cpu(), dataset.std.flatten())
    )
    if not same:
        raise ValueError(f"the reference loop needs a zoo model normalising with the Dataset's statistics; got {own}")
    model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    model.normalize = nn.Identity()
    return model


def reference_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    ce_weight: float,
) -> torch.Tensor:
    """``ce_weight · CE(z_s, y) + (1 − ce_weight) · τ² · KL(σ(z_t/τ) ‖ σ(z_s/τ))``, the KL averaged over the batch.

    kdlab's ``kd`` uses the soft cross-entropy instead of the KL; the two differ by the teacher's entropy
    (a constant for the student), so the gradients are the same.
    """
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    soft_teacher = F.softmax(teacher_logits / temperature, dim=1)
    loss = (1.0 - ce_weight) * nn.KLDivLoss(reduction="batchmean")(log_student, soft_teacher) * temperature**2
    if ce_weight > 0:
        loss = loss + ce_weight * F.cross_entropy(student_logits, labels)
    return loss


@contextlib.contextmanager
def classic_backend() -> Iterator[None]:
    """``torch.backends.cudnn.benchmark = True`` for the block (RepDistiller's ``train_student.py`` sets it)."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


class ReferenceLoop:
    """Classic online-teacher KD over a ``DataLoader``; see the module docstring."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        dataset: PerSampleImages,
        *,
        batch_size: int,
        optim: OptimConfig,
        temperature: float,
        ce_weight: float,
        device: torch.device,
        seed: int = 0,
    ) -> None:
        workers = 0 if device.type == "cpu" else min(MAX_WORKERS, os.cpu_count() or 1)
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            num_workers=workers,
            generator=torch.Generator().manual_seed(seed),
        )
        self.student = without_normalize(student, dataset).to(device).train()
        self.teacher = without_normalize(teacher, dataset).to(device).eval()
        self.optimizer = torch.optim.SGD(
            self.student.parameters(),
            lr=optim.lr,
            momentum=optim.momentum,
            nesterov=optim.nesterov and optim.momentum > 0,
            weight_decay=optim.weight_decay,
        )
        self.temperature, self.ce_weight, self.device = temperature, ce_weight, device
        self.phases: Phases = no_phase
        self.loss_sum, self.correct, self.seen = 0.0, 0, 0

    def epoch(self, epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return self.loader

    def warmup_extra(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return ()

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        images, labels = batch
        images, labels = images.to(self.device), labels.to(self.device)
        with self.phases("student_forward"):
            logits = self.student(images)
        with self.phases("teacher_forward"), torch.no_grad():
            teacher_logits = self.teacher(images)
        with self.phases("loss"):
            loss = reference_kd_loss(logits, teacher_logits, labels, self.temperature, self.ce_weight)
        with self.phases("student_backward"):
            self.optimizer.zero_grad()
            loss.backward()
        with self.phases("optimizer"):
            self.optimizer.step()
        self.loss_sum += loss.item() * len(labels)
        self.correct += (logits.argmax(dim=1) == labels).sum().item()
        self.seen += len(labels)
        return len(labels)

    def summary(self) -> dict[str, float]:
        return {"loss": self.loss_sum / self.seen, "accuracy": self.correct / self.seen}
