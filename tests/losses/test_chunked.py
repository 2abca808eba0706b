"""Chunked row sums equal the unchunked sums, values and gradients, for every chunk size."""

import pytest
import torch

from kdlab.losses import forward_kl
from kdlab.losses.chunked import chunked_sums


@pytest.mark.parametrize("chunk", [None, 1, 3, 7, 100])
def test_chunks_give_the_sum_and_the_gradient_of_all_rows(chunk):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(10, 6, generator=g, requires_grad=True)
    head = torch.nn.Linear(6, 9)
    teacher = torch.randn(10, 9, generator=g)

    def sums(start, end):
        z = head(hidden[start:end])
        ones = torch.ones(1, end - start, dtype=torch.bool)
        return forward_kl(z[None], teacher[None, start:end], ones).sum(), (z**2).sum()

    kd, square = chunked_sums(10, chunk, sums)
    grads = torch.autograd.grad(kd + square, [hidden, head.weight, head.bias])
    reference = sums(0, 10)
    expected = torch.autograd.grad(reference[0] + reference[1], [hidden, head.weight, head.bias])
    assert torch.allclose(kd, reference[0], atol=1e-6) and torch.allclose(square, reference[1], atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, expected, strict=True))


def test_no_rows_give_zero_sums_with_a_gradient():
    hidden = torch.zeros(0, 4, requires_grad=True)
    (total,) = chunked_sums(0, 2, lambda start, end: (hidden[start:end].sum(),))
    assert total.item() == 0 and torch.autograd.grad(total, hidden)[0].shape == (0, 4)
