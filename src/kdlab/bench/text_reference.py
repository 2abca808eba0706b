"""The text reference: a KD loop written the way TextBrewer-style and Hugging Face ``Trainer``-style distillation
scripts write it, to measure kdlab's text pair against on the same models, texts, batch and optimiser.

What makes it TextBrewer-style — and what each part costs:

- a ``Dataset`` of raw texts and labels, batched by a ``DataLoader`` (0 workers, the ``Trainer`` default) whose
  ``collate_fn`` calls the tokenizer on every batch (``padding="longest"``, ``truncation=True``,
  ``return_tensors="pt"``): each epoch tokenises every text again, on the host, inside the training step's time
  (kdlab tokenises once before training and keeps the ids on the device);
- every tensor of the batch dict copied to the device on every step (``{k: v.to(device)}``, not pinned);
- the teacher run online on every batch, in eval mode under ``torch.no_grad()``, with ``output_hidden_states=True``
  on both models as TextBrewer's adaptors request them: the hidden states of every block are returned and kept
  alive until the step ends (memory more than time: they exist anyway);
- the whole batch, labels included, passed to both models, so the student's own ``outputs.loss`` (its label
  cross-entropy) is the hard-label term, and the teacher computes one it never uses;
- ``KLDivLoss(batchmean)`` between the tempered log-softmax of the student and the tempered softmax of the
  teacher, times τ², weighted as kdlab's ``kd`` weighs its soft term (1 − ``ce_weight``), plus ``ce_weight`` ×
  the hard-label loss;
- ``loss.item()`` read on the host after every step (a device sync per step on a GPU); ``torch.optim.AdamW`` with
  a linear decay (``get_linear_schedule_with_warmup`` without warm-up) stepped per batch; float32, eager.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdlab.bench.timing import no_phase
from kdlab.training.engine import Phases
from kdlab.training.optim import OptimConfig

TextBatch = dict[str, torch.Tensor]


class RawTexts(Dataset[tuple[str, int]]):
    """Texts and their class ids, one ``(text, label)`` pair per ``__getitem__``, untokenised."""

    def __init__(self, texts: Sequence[str], labels: torch.Tensor) -> None:
        self.texts, self.labels = list(texts), labels.tolist()

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> tuple[str, int]:
        return self.texts[index], int(self.labels[index])


class TokenizingCollate:
    """The ``collate_fn``: tokenise one batch of ``(text, label)`` pairs into the dict a Hugging Face model takes
    (``input_ids``, ``attention_mask``, ``token_type_ids`` and ``labels``)."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, items: list[tuple[str, int]]) -> TextBatch:
        texts = [text for text, _ in items]
        encoded = self.tokenizer(
            texts, padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {**encoded, "labels": torch.tensor([label for _, label in items])}


def textbrewer_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    hard_loss: torch.Tensor,
    temperature: float,
    ce_weight: float,
) -> torch.Tensor:
    """``(1 − ce_weight) · τ² · KL(σ(z_t/τ) ‖ σ(z_s/τ)) + ce_weight · hard_loss``, the KL averaged over the batch.

    kdlab's ``kd`` takes the soft cross-entropy instead of the KL; the two differ by the teacher's entropy (a
    constant for the student), so the gradients are the same.
    """
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    soft_teacher = F.softmax(teacher_logits / temperature, dim=-1)
    soft = nn.KLDivLoss(reduction="batchmean")(log_student, soft_teacher) * temperature**2
    return (1.0 - ce_weight) * soft + ce_weight * hard_loss


class TextReferenceLoop:
    """TextBrewer-style online-teacher KD over a tokenising ``DataLoader``; see the module docstring."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        dataset: RawTexts,
        tokenizer: Any,
        *,
        batch_size: int,
        max_length: int,
        optim: OptimConfig,
        temperature: float,
        ce_weight: float,
        device: torch.device,
        epochs: int = 1,
        seed: int = 0,
    ) -> None:
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            collate_fn=TokenizingCollate(tokenizer, max_length),
            generator=torch.Generator().manual_seed(seed),
        )
        self.student = student.to(device).train()
        self.teacher = copy.deepcopy(teacher).to(device).eval()
        self.optimizer = torch.optim.AdamW(
            self.student.parameters(), lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay
        )
        total = max(len(self.loader) * epochs, 1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: max(0.0, 1.0 - step / total))
        self.temperature, self.ce_weight, self.device = temperature, ce_weight, device
        self.phases: Phases = no_phase
        self.loss_sum, self.seen = 0.0, 0

    def epoch(self, epoch: int) -> Iterable[TextBatch]:
        return self.loader

    def warmup_extra(self) -> Iterable[TextBatch]:
        return ()

    def step(self, batch: TextBatch) -> int:
        batch = {name: tensor.to(self.device) for name, tensor in batch.items()}
        with self.phases("student_forward"):
            student = self.student(**batch, output_hidden_states=True)
        with self.phases("teacher_forward"), torch.no_grad():
            teacher = self.teacher(**batch, output_hidden_states=True)
        with self.phases("loss"):
            loss = textbrewer_kd_loss(student.logits, teacher.logits, student.loss, self.temperature, self.ce_weight)
        with self.phases("student_backward"):
            loss.backward()
        with self.phases("optimizer"):
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad()
        size = len(batch["labels"])
        self.loss_sum += loss.item() * size
        self.seen += size
        return size

    def summary(self) -> dict[str, float]:
        return {"loss": self.loss_sum / self.seen}
