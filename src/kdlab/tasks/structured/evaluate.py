"""Decoding and metrics for structured predictors: task scores (token accuracy, span F1, UAS/LAS) and the
student's fidelity to its teacher (token/head agreement, whole-sentence agreement, token-level KL)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdlab.core.batch import Batch
from kdlab.core.outputs import ModelOutput
from kdlab.data.sentences.labels import LabelTable
from kdlab.data.sentences.loader import SentenceExtras
from kdlab.metrics.sequence import attachment_scores, span_f1, token_accuracy
from kdlab.models.sequence import chain_of
from kdlab.ops.crf import log_marginals, viterbi
from kdlab.ops.trees import decode_mst

Predictor = Callable[[Batch], ModelOutput]


@dataclass
class Decoded:
    """Per-sentence predictions: label ids (tagging) or heads + relation ids (parsing), and for taggers the
    token log-distributions (marginals of a CRF, the softmax of a MaxEnt tagger)."""

    labels: list[list[int]]
    heads: list[list[int]]
    token_log_probs: list[torch.Tensor]


def decode(output: ModelOutput, kind: str, mask: torch.Tensor, table: LabelTable | None = None) -> Decoded:
    """Best structure of every sentence of a batch: Viterbi (CRF), argmax (MaxEnt), maximum spanning tree
    (parser), best in-sentence label (sequence-labelling parser)."""
    lengths = mask.sum(1).tolist()
    dists: list[torch.Tensor] = []
    heads = None
    if kind == "crf":
        chain = chain_of(output, mask)
        labels, _ = viterbi(chain)
        log_q = log_marginals(chain).tokens
        dists = [log_q[b, :n] for b, n in enumerate(lengths)]
    elif kind == "maxent":
        log_q = F.log_softmax(output.logits.float(), -1)
        labels = log_q.argmax(-1)
        dists = [log_q[b, :n] for b, n in enumerate(lengths)]
    elif kind == "labeler":
        assert table is not None
        heads, labels = table.decode(output.logits, mask)
    else:
        heads = decode_mst(output.logits.float(), mask)
        scores = output.structure["relations"]
        at = scores.gather(2, heads[..., None, None].expand(-1, -1, 1, scores.shape[-1])).squeeze(2)
        labels = at.argmax(-1)
    labels_list = [labels[b, :n].tolist() for b, n in enumerate(lengths)]
    heads_list = [] if heads is None else [heads[b, :n].tolist() for b, n in enumerate(lengths)]
    return Decoded(labels_list, heads_list, dists)


def predict(
    predictors: dict[str, tuple[Predictor, str]], batches: Iterable[Batch], table: LabelTable | None = None
) -> tuple[dict[str, Decoded], list[torch.Tensor]]:
    """Decode every batch with every named (predictor, kind); returns the decodings and the gold ``y`` rows."""
    out = {name: Decoded([], [], []) for name in predictors}
    gold: list[torch.Tensor] = []
    with torch.no_grad():
        for batch in batches:
            assert isinstance(batch.extras, SentenceExtras)
            mask = batch.extras.mask
            for name, (predictor, kind) in predictors.items():
                d = decode(predictor(batch), kind, mask, table)
                out[name].labels += d.labels
                out[name].heads += d.heads
                out[name].token_log_probs += d.token_log_probs
            gold += [batch.y[b, : int(n)] for b, n in enumerate(mask.sum(1))]
    return out, gold


def is_span_tagset(tags: Iterable[str]) -> bool:
    """Whether tags are chunk tags (IOB/IOBES: O, B-X, I-X, ...) scored by span F1."""
    tags = list(tags)
    return bool(tags) and all(t == "O" or (len(t) > 2 and t[1] == "-" and t[0] in "BIES") for t in tags)


def task_metrics(decoded: Decoded, gold: list[torch.Tensor], label_names: tuple[str, ...]) -> dict[str, float]:
    """Token accuracy (+ span precision/recall/F1 for chunk tags), or UAS/LAS for parsing."""
    if decoded.heads:
        gh, gr = [g[:, 0].tolist() for g in gold], [g[:, 1].tolist() for g in gold]
        return attachment_scores(decoded.heads, decoded.labels, gh, gr)
    names = [[label_names[i] for i in seq] for seq in decoded.labels]
    gold_names = [[label_names[i] if i >= 0 else "O" for i in g.tolist()] for g in gold]
    out = {"accuracy": token_accuracy(decoded.labels, [g.tolist() for g in gold])}
    if is_span_tagset(label_names):
        f = span_f1(names, gold_names)
        out.update(precision=f["precision"], recall=f["recall"], f1=f["f1"])
    return out


def fidelity(student: Decoded, teacher: Decoded) -> dict[str, float]:
    """Agreement of the student's structures with the teacher's: per token (``agreement``; for parsing the head,
    with ``labelled_agreement`` head + relation), whole sentences (``sentence_agreement``), and for two taggers
    the mean token-level ``kl`` = KL(teacher's token distribution ‖ student's)."""
    if student.heads:
        pairs = list(zip(student.heads, teacher.heads, strict=True))
        labelled = [
            sum(h == th and r == tr for h, th, r, tr in zip(sh, t_h, s_r, t_r, strict=True))
            for (sh, t_h), s_r, t_r in zip(pairs, student.labels, teacher.labels, strict=True)
        ]
        words = sum(len(h) for h, _ in pairs)
        return {
            "agreement": sum(sum(a == b for a, b in zip(s, t, strict=True)) for s, t in pairs) / words,
            "labelled_agreement": sum(labelled) / words,
            "sentence_agreement": sum(lab == len(h) for lab, (h, _) in zip(labelled, pairs, strict=True)) / len(pairs),
        }
    pairs = list(zip(student.labels, teacher.labels, strict=True))
    tokens = sum(len(s) for s, _ in pairs)
    out = {
        "agreement": sum(sum(a == b for a, b in zip(s, t, strict=True)) for s, t in pairs) / tokens,
        "sentence_agreement": sum(s == t for s, t in pairs) / len(pairs),
    }
    if student.token_log_probs and teacher.token_log_probs:
        kl = sum(
            F.kl_div(s, t, log_target=True, reduction="sum").item()
            for s, t in zip(student.token_log_probs, teacher.token_log_probs, strict=True)
        )
        out["kl"] = kl / tokens
    return out
