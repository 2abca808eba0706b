"""Structural KD equals the brute-force cross-entropy over all label sequences (Wang et al. 2021, §3)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from kdlab.losses.structured import (
    crf_teacher_marginals,
    parse_label_log_marginals,
    posterior_kd,
    product_marginals,
    structural_kd_crf,
    structural_kd_tokens,
    token_kd,
    top_k_crf,
    top_k_tokens,
    top_k_weights,
)
from kdlab.ops.crf import Chain, k_best, log_marginals

LENGTHS = (5, 3, 1)


def chain(seed, tags=3, lengths=LENGTHS, grad=False):
    g = torch.Generator().manual_seed(seed)
    n = max(lengths)
    parts = [
        torch.randn(len(lengths), n, tags, generator=g, dtype=torch.float64),
        torch.randn(tags, tags, generator=g, dtype=torch.float64),
        torch.randn(tags, generator=g, dtype=torch.float64),
        torch.randn(tags, generator=g, dtype=torch.float64),
    ]
    if grad:
        parts = [p.requires_grad_(True) for p in parts]
    mask = torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]
    return Chain(*parts, mask)


def log_probs(c, b):
    """Every sequence of sentence b with log P(y) under the CRF c (from the definition)."""
    length, tags = int(c.mask[b].sum()), c.emissions.shape[2]
    seqs = list(itertools.product(range(tags), repeat=length))
    scores = []
    for y in seqs:
        s = c.start[y[0]] + c.emissions[b, 0, y[0]] + c.end[y[-1]]
        scores.append(s + sum(c.transitions[y[i - 1], y[i]] + c.emissions[b, i, y[i]] for i in range(1, length)))
    scores = torch.stack(scores)
    return seqs, scores - torch.logsumexp(scores, 0)


def maxent_log_probs(logits, b, length, seqs):
    lp = F.log_softmax(logits[b], -1)
    return torch.stack([sum(lp[i, y[i]] for i in range(length)) for y in seqs])


@pytest.mark.parametrize("tags", [2, 3, 4])
@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_case_1a_factorized_equals_brute_force_with_gradients(tags, tau):
    teacher, student = chain(1, tags), chain(2, tags, grad=True)
    q = crf_teacher_marginals(teacher, tau, "global")
    loss = structural_kd_crf(student, q, tau)
    brute = []
    for b in range(len(LENGTHS)):
        _, lt = log_probs(teacher.scaled(1 / tau), b)
        _, ls = log_probs(student.scaled(1 / tau), b)
        brute.append(-(tau**2) * (lt.exp() * ls).sum())
    brute = torch.stack(brute)
    assert torch.allclose(loss, brute, atol=1e-6)
    params = [student.emissions, student.transitions, student.start, student.end]
    got = torch.autograd.grad(loss.sum(), params)
    want = torch.autograd.grad(brute.sum(), params)
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-6)


def test_local_temperature_differs_from_global_and_agrees_at_tau_one():
    teacher = chain(3)
    local, exact = crf_teacher_marginals(teacher, 3.0, "local"), crf_teacher_marginals(teacher, 3.0, "global")
    gap = (local.edges.exp().nan_to_num() - exact.edges.exp().nan_to_num()).abs().max()
    assert gap > 1e-3  # a different objective, as Wang et al. 2021 (Appendix A) found (0.015 there)
    one_local, one_global = crf_teacher_marginals(teacher, 1.0, "local"), crf_teacher_marginals(teacher, 1.0, "global")
    assert torch.equal(one_local.edges.nan_to_num(), one_global.edges.nan_to_num())
    # each locally tempered position is still a distribution
    assert torch.allclose(local.edges[0, :4].exp().sum((1, 2)), torch.ones(4, dtype=torch.float64))


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_case_2a_crf_teacher_to_maxent_student_equals_brute_force(tau):
    teacher = chain(4)
    logits = torch.randn(3, 5, 3, dtype=torch.float64, requires_grad=True)
    q = crf_teacher_marginals(teacher, tau, "global")
    loss = structural_kd_tokens(logits, q.tokens, teacher.mask, tau)
    brute = []
    for b, length in enumerate(LENGTHS):
        seqs, lt = log_probs(teacher.scaled(1 / tau), b)
        brute.append(-(tau**2) * (lt.exp() * maxent_log_probs(logits / tau, b, length, seqs)).sum())
    brute = torch.stack(brute)
    assert torch.allclose(loss, brute, atol=1e-6)
    assert torch.allclose(*[torch.autograd.grad(v.sum(), logits)[0] for v in (loss, brute)], atol=1e-6)


@pytest.mark.parametrize("tau", [1.0, 2.5])
def test_case_3_maxent_teacher_product_marginals_and_crf_student(tau):
    mask = chain(0).mask
    teacher_logits = torch.randn(3, 5, 4, dtype=torch.float64)
    student = chain(5, tags=4, grad=True)
    q = product_marginals(F.log_softmax(teacher_logits / tau, -1), mask)
    loss = structural_kd_crf(student, q, tau)
    for b, length in enumerate(LENGTHS):
        seqs = list(itertools.product(range(4), repeat=length))
        lt = maxent_log_probs(teacher_logits / tau, b, length, seqs)
        _, ls = log_probs(student.scaled(1 / tau), b)
        # the product marginals are the exact marginals of the product distribution
        if length > 1:
            edge = torch.zeros(4, 4, dtype=torch.float64)
            for y, p in zip(seqs, lt.exp(), strict=True):
                edge[y[0], y[1]] += p
            assert torch.allclose(q.edges[b, 0].exp(), edge, atol=1e-10)
        assert torch.allclose(loss[b], -(tau**2) * (lt.exp() * ls).sum(), atol=1e-6)


def test_top_k_with_every_sequence_weighted_by_the_teacher_is_the_exact_cross_entropy():
    teacher, student = chain(6), chain(7)
    sequences, scores = k_best(teacher, 3**5)  # every sequence of the longest sentence
    weights = top_k_weights(scores, weighted=True)
    exact = structural_kd_crf(student, crf_teacher_marginals(teacher, 1.0, "global"), 1.0)
    assert torch.allclose(top_k_crf(student, sequences, weights), exact, atol=1e-8)
    uniform = top_k_weights(scores, weighted=False)
    assert torch.allclose(uniform.sum(1), torch.ones(3, dtype=torch.float64))
    assert int((uniform[2] > 0).sum()) == 3  # a one-token sentence has 3 sequences


def test_top_k_tokens_is_the_nll_of_the_teacher_paths():
    logits = torch.randn(3, 5, 3, dtype=torch.float64)
    teacher = chain(8)
    sequences, scores = k_best(teacher, 2)
    weights = top_k_weights(scores, weighted=False)
    lp = F.log_softmax(logits, -1)
    for b, length in enumerate(LENGTHS):
        want = -0.5 * sum(lp[b, i, sequences[b, j, i]] for j in range(2) for i in range(length))
        assert float(top_k_tokens(logits, sequences, weights, teacher.mask)[b]) == pytest.approx(float(want))


def test_token_and_posterior_kd_vanish_for_the_teacher_itself_and_are_positive_otherwise():
    teacher, other = chain(9), chain(10)
    assert torch.allclose(token_kd(teacher.emissions, teacher.emissions, teacher.mask, 2.0), torch.zeros(3).double())
    q = log_marginals(teacher).tokens
    assert torch.allclose(posterior_kd(teacher, q, 2.0), torch.zeros(3, dtype=torch.float64), atol=1e-10)
    assert torch.all(posterior_kd(other, q, 2.0) > 0) and torch.all(token_kd(other.emissions, q, other.mask) > 0)


def test_case_1b_parser_marginals_on_offset_relation_labels_equal_brute_force():
    """A head-selection teacher (every word picks its head and relation independently) over all head vectors."""
    torch.manual_seed(0)
    n, rels = 3, 2
    mask = torch.ones(1, n, dtype=torch.bool)
    arc = torch.randn(1, n, n + 1, dtype=torch.float64)
    for m in range(n):
        arc[0, m, m + 1] = -torch.inf  # no self-loops
    head_lp = F.log_softmax(arc, -1)
    rel_lp = F.log_softmax(torch.randn(1, n, n + 1, rels, dtype=torch.float64), -1)
    labels = [(o, r) for o in range(-n, n + 1) if o != 0 for r in range(rels)]
    offsets = torch.tensor([o for o, _ in labels])
    relations = torch.tensor([r for _, r in labels])
    q = parse_label_log_marginals(head_lp, rel_lp, offsets, relations, mask)
    assert torch.allclose(q.exp().sum(-1), torch.ones(1, n, dtype=torch.float64))
    logits = torch.randn(1, n, len(labels), dtype=torch.float64, requires_grad=True)
    loss = structural_kd_tokens(logits, q, mask)
    slp = F.log_softmax(logits[0], -1)
    brute = 0.0
    choices = [[(h, r) for h in range(n + 1) if h != m + 1 for r in range(rels)] for m in range(n)]
    for tree in itertools.product(*choices):
        p = sum(head_lp[0, m, h] + rel_lp[0, m, h, r] for m, (h, r) in enumerate(tree)).exp()
        brute = brute - p * sum(slp[m, labels.index((h - (m + 1), r))] for m, (h, r) in enumerate(tree))
    assert torch.allclose(loss[0], brute, atol=1e-8)
    assert torch.allclose(*[torch.autograd.grad(v, logits, retain_graph=True)[0] for v in (loss[0], brute)])


def test_case_1b_with_matrix_tree_marginals_equals_brute_force_over_trees():
    """A tree-constrained teacher (single root): the factorized loss equals the cross-entropy over all trees."""
    from kdlab.ops.trees import enumerate_trees, matrix_tree_marginals

    torch.manual_seed(1)
    n, rels = 4, 2
    mask = torch.ones(1, n, dtype=torch.bool)
    arc = torch.randn(1, n, n + 1, dtype=torch.float64)
    rel_lp = F.log_softmax(torch.randn(1, n, n + 1, rels, dtype=torch.float64), -1)
    labels = [(o, r) for o in range(-n, n + 1) if o != 0 for r in range(rels)]
    offsets, relations = torch.tensor([o for o, _ in labels]), torch.tensor([r for _, r in labels])
    q = parse_label_log_marginals(matrix_tree_marginals(arc, mask).log(), rel_lp, offsets, relations, mask)
    logits = torch.randn(1, n, len(labels), dtype=torch.float64)
    slp = F.log_softmax(logits[0], -1)
    trees = enumerate_trees(n)
    scores = torch.stack([sum(arc[0, m, h] for m, h in enumerate(t)) for t in trees])
    p_tree = (scores - torch.logsumexp(scores, 0)).exp()
    brute = 0.0
    for p, tree in zip(p_tree, trees, strict=True):
        for rel_choice in itertools.product(range(rels), repeat=n):
            p_y = p * sum(rel_lp[0, m, h, r] for m, (h, r) in enumerate(zip(tree, rel_choice, strict=True))).exp()
            brute = brute - p_y * sum(slp[m, labels.index((h - (m + 1), r))] for m, (h, r) in
                                      enumerate(zip(tree, rel_choice, strict=True)))  # fmt: skip
    assert torch.allclose(structural_kd_tokens(logits, q, mask)[0], brute, atol=1e-8)


@pytest.mark.parametrize("arcs_mode", ["head_selection", "matrix_tree"])
def test_case_1b_global_temperature_is_the_exact_tempered_cross_entropy(arcs_mode):
    """P_t(tree, relations)^{1/τ}/Z against the label student at τ, by enumeration (head vectors or trees)."""
    from kdlab.core.outputs import ModelOutput
    from kdlab.data.sentences.labels import LabelTable
    from kdlab.methods import MethodContext
    from kdlab.methods.structured import SequenceContext, StructuralKD, StructuralKDParams
    from kdlab.ops.trees import enumerate_trees

    torch.manual_seed(2)
    n, rels, tau = 3, 2, 2.0
    mask = torch.ones(1, n, dtype=torch.bool)
    arc = torch.randn(1, n, n + 1)
    for m in range(n):
        arc[0, m, m + 1] = -1e4
    rel_scores = torch.randn(1, n, n + 1, rels)
    labels = [(o, r) for o in range(-n, n + 1) if o != 0 for r in range(rels)]
    table = LabelTable.from_pairs(labels, rels)
    params = StructuralKDParams(temperature=tau, teacher_temperature="global", arc_marginals=arcs_mode)
    extras = SequenceContext("parsing", "labeler", "parser", table)
    context = MethodContext(torch.nn.Identity(), None, len(labels), extras=extras)
    method = StructuralKD(params, context)
    q = method.parse_targets(ModelOutput(logits=arc, structure={"relations": rel_scores}), mask)
    logits = torch.randn(1, n, len(labels), dtype=torch.float64)
    loss = structural_kd_tokens(logits, q.double(), mask, tau)[0]
    head_lp = F.log_softmax(arc.double(), -1)
    rel_lp = F.log_softmax(rel_scores.double(), -1)
    slp = F.log_softmax(logits[0] / tau, -1)
    if arcs_mode == "matrix_tree":
        structures = enumerate_trees(n)
        arc_part = [sum(arc[0, m, h].double() for m, h in enumerate(t)) for t in structures]
    else:
        structures = [t for t in itertools.product(range(n + 1), repeat=n) if all(h != m + 1 for m, h in enumerate(t))]
        arc_part = [sum(head_lp[0, m, h] for m, h in enumerate(t)) for t in structures]
    entries, log_p = [], []
    for tree, a in zip(structures, arc_part, strict=True):
        for choice in itertools.product(range(rels), repeat=n):
            entries.append(list(zip(tree, choice, strict=True)))
            log_p.append((a + sum(rel_lp[0, m, h, r] for m, (h, r) in enumerate(entries[-1]))) / tau)
    p = F.softmax(torch.stack(log_p), 0)
    brute = -(tau**2) * sum(
        w * sum(slp[m, labels.index((h - (m + 1), r))] for m, (h, r) in enumerate(e))
        for w, e in zip(p, entries, strict=True)
    )
    assert torch.allclose(loss, brute, atol=1e-5)
