"""Free domain adaptation through distillation (Ojha et al. 2023, §5.1): per-domain accuracy of the teacher
and of each student, and each student's consensus (top-1 agreement) with the teacher on every domain."""

from __future__ import annotations

import torch
from torch import nn

from kdlab.core.modes import eval_mode
from kdlab.data.domains import domain_test_sets
from kdlab.data.loader import to_float


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    with eval_mode(model):
        return torch.cat([model(to_float(x[s : s + batch_size])).argmax(-1) for s in range(0, len(x), batch_size)])


def domain_predictions(
    models: dict[str, nn.Module], sets: dict[str, tuple[torch.Tensor, torch.Tensor]]
) -> dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """``{domain: (labels [N], {name: predictions [N]})}`` on ``sets`` (:func:`~kdlab.data.domains.domain_test_sets`:
    the test split of a data set rendered in every domain)."""
    return {
        domain: (y, {name: _predict(model, x) for name, model in models.items()}) for domain, (x, y) in sets.items()
    }


def domain_rows(
    predictions: dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> dict[str, dict[str, dict[str, float]]]:
    """``{domain: {"teacher": {"accuracy"}, name: {"accuracy", "consensus"}}}`` in % (consensus: top-1 agreement
    with the teacher) from :func:`domain_predictions` of the teacher (named ``teacher``) and the students."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for domain, (y, predicted) in predictions.items():
        t = predicted["teacher"]
        row = {"teacher": {"accuracy": 100.0 * float((t == y).double().mean())}}
        for name, s in predicted.items():
            if name != "teacher":
                row[name] = {
                    "accuracy": 100.0 * float((s == y).double().mean()),
                    "consensus": 100.0 * float((s == t).double().mean()),
                }
        out[domain] = row
    return out


def domain_transfer(
    teacher: nn.Module, students: dict[str, nn.Module], base: str = "mnist", seed: int = 0
) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`domain_rows` of ``teacher`` and ``students`` on ``base`` rendered in every domain."""
    return domain_rows(domain_predictions({"teacher": teacher, **students}, domain_test_sets(base, seed)))
