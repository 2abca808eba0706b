"""What a language-model job measures on held-out text — next-token fidelity, which none of the LM distillation
libraries reports:

- each model's next-token cross-entropy (``nll``, nats per token), ``perplexity`` = exp(nll), top-1 ``accuracy``
  and the ``ece`` of its top-1 predictions (15 equal-width confidence bins);
- the student against the teacher, per trained token: top-1 ``agreement``, mean ``kl`` = KL(teacher ‖ student),
  mean total variation ``tv``, and ``top5_overlap`` = |top-5(student) ∩ top-5(teacher)| / 5;
- on continuations the student samples from held-out prompts: the teacher's mean log-probability of the sampled
  tokens (``sample_teacher_logp``; higher = the student writes what the teacher would) beside the student's own
  (``sample_student_logp``).

Every figure is summed on the device over the split and read once at the end.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.modes import eval_mode
from kdlab.core.outputs import as_model_output
from kdlab.data.lm.alignment import gather_positions
from kdlab.losses.cross_tokenizer import uld
from kdlab.losses.tokens import forward_kl, next_token_cross_entropy, next_token_targets, prediction_logits
from kdlab.ops.sampling import sample_completions

BINS = 15
TOP_K = 5
SAMPLE_PROMPTS = 64  # held-out prompts the student continues for the sample figures
SAMPLE_TOKENS = 32
SAMPLE_PROMPT_TOKENS = 32  # the prompt of a plain-text sequence that has none of its own


def logits(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return as_model_output(model(**inputs)).logits.float()


class _Sums:
    """Per-token sums of one model's figures (and of its fidelity to a reference), on the device."""

    def __init__(self, device: torch.device) -> None:
        self.values: dict[str, torch.Tensor] = {}
        self.confidence = torch.zeros(BINS, device=device)
        self.correct = torch.zeros(BINS, device=device)
        self.count = torch.zeros(BINS, device=device)

    def add(self, name: str, value: torch.Tensor) -> None:
        self.values[name] = self.values.get(name, 0) + value.sum().double()

    def calibration(self, log_probs: torch.Tensor, targets: torch.Tensor) -> None:
        confidence, guess = log_probs.exp().max(-1)
        bins = (confidence * BINS).long().clamp(max=BINS - 1)
        self.count += torch.bincount(bins, minlength=BINS)
        self.confidence += torch.bincount(bins, weights=confidence, minlength=BINS)
        self.correct += torch.bincount(bins, weights=(guess == targets).float(), minlength=BINS)

    def read(self, tokens: float) -> dict[str, float]:
        spelled = self.values.pop("bytes", None)
        out = {k: float(v) / max(tokens, 1.0) for k, v in self.values.items()}
        if spelled is not None and "nll" in self.values:
            out["nll_per_byte"] = float(self.values["nll"]) / max(float(spelled), 1.0)
        gaps = (self.confidence - self.correct).abs().sum()
        out["ece"] = float(gaps) / max(tokens, 1.0)
        if "nll" in out:
            out["perplexity"] = math.exp(min(out["nll"], 700.0))
        return out


@torch.no_grad()
def next_token_figures(
    student: nn.Module,
    teacher: nn.Module | None,
    batches: Iterable[Batch],
    *,
    vocab: int | None = None,
    token_bytes: torch.Tensor | None = None,
) -> dict[str, dict[str, float]]:
    """``{"student": {...}, "teacher": {...}}`` over every trained next-token target of ``batches`` (``teacher``
    only with a teacher; the student's entry then holds the fidelity figures too). Logits beyond the tokenizer's
    ``vocab`` tokens (a padded vocabulary) are cut. With ``token_bytes`` (``[V]``, the bytes each token spells)
    each model also gets ``nll_per_byte``: its cross-entropy per byte of text, comparable across tokenizers."""
    sums: dict[str, _Sums] = {}
    tokens = torch.zeros((), dtype=torch.float64)
    models = {"student": student} if teacher is None else {"student": student, "teacher": teacher}
    with contextlib.ExitStack() as stack:
        for model in models.values():
            stack.enter_context(eval_mode(model))
        for batch in batches:
            targets, mask = next_token_targets(batch.y)
            flat = mask.reshape(-1)
            t_flat = targets.reshape(-1)[flat]
            tokens = tokens.to(flat.device) + flat.sum()
            log_probs = {}
            for name, model in models.items():
                z = prediction_logits(logits(model, batch.x))[..., :vocab]
                lp = z.log_softmax(-1).reshape(-1, z.shape[-1])[flat]
                log_probs[name] = lp
                s = sums.setdefault(name, _Sums(flat.device))
                s.add("nll", next_token_cross_entropy(z, targets, mask))
                s.add("accuracy", (lp.argmax(-1) == t_flat).float())
                s.calibration(lp, t_flat)
                if token_bytes is not None:
                    s.add("bytes", token_bytes.to(t_flat.device)[t_flat])
            if teacher is not None:
                s, t = log_probs["student"], log_probs["teacher"]
                fid = sums["student"]
                fid.add("agreement", (s.argmax(-1) == t.argmax(-1)).float())
                fid.add("kl", forward_kl(s[None], t[None], torch.ones_like(s[None, :, 0], dtype=torch.bool)))
                fid.add("tv", 0.5 * (s.exp() - t.exp()).abs().sum(-1))
                top_s, top_t = s.topk(TOP_K, -1).indices, t.topk(TOP_K, -1).indices
                fid.add("top5_overlap", (top_s[:, :, None] == top_t[:, None, :]).any(-1).float().sum(-1) / TOP_K)
    count = float(tokens)
    return {name: s.read(count) | {"tokens": count} for name, s in sums.items()}


@torch.no_grad()
def sample_figures(
    student: nn.Module,
    teacher: nn.Module,
    batches: Iterable[Batch],
    *,
    prompts: int = SAMPLE_PROMPTS,
    new_tokens: int = SAMPLE_TOKENS,
    eos_ids: tuple[int, ...] = (),
    seed: int = 0,
    positions: int | None = None,
) -> dict[str, float]:
    """The teacher's and the student's mean log-probability per token of the continuations the student samples
    (temperature 1) from the first ``prompts`` held-out prompts (a sequence's own prompt, else its first
    ``SAMPLE_PROMPT_TOKENS`` tokens), within the models' ``positions`` (prompts cut to half of them at most)."""
    limit = positions or 1 << 30
    sums = {"teacher": 0.0, "student": 0.0}
    kept = 0.0
    left = prompts
    generator: torch.Generator | None = None
    for batch in batches:
        if left <= 0:
            break
        ids = batch.x["input_ids"][:left]
        extras = batch.extras
        lengths = extras.prompt_lengths[:left]
        width = extras.prompt_width
        if width == 0 or width > limit // 2:  # no prompts of its own (plain text), or too long ones: the first tokens
            width = min(SAMPLE_PROMPT_TOKENS, ids.shape[1] - 1, limit // 2)
            lengths = torch.full_like(lengths, width)
        generator = generator or torch.Generator(device=ids.device).manual_seed(seed)
        made = sample_completions(student, ids, lengths.clamp(min=1), max(width, 1),
                                  max_new_tokens=min(new_tokens, limit - max(width, 1)), eos_ids=eos_ids,
                                  generator=generator)  # fmt: skip
        targets, mask = next_token_targets(made.labels)
        for name, model in (("teacher", teacher), ("student", student)):
            with eval_mode(model):
                z = prediction_logits(logits(model, made.inputs))
            sums[name] += float(-next_token_cross_entropy(z, targets, mask).sum())
        kept += float(mask.sum())
        left -= len(ids)
    return {f"sample_{k}_logp": v / max(kept, 1.0) for k, v in sums.items()} | {"sample_tokens": kept}


@torch.no_grad()
def aligned_distance(student: nn.Module, teacher: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
    """Cross-tokenizer fidelity: the mean ULD distance (sorted probabilities, :func:`kdlab.losses.uld`) between the
    student's and the teacher's next-token distributions at the aligned positions of ``batches`` (whose extras
    carry the teacher's tokens and the alignment, :mod:`kdlab.data.lm.cross`)."""
    total, count = 0.0, 0.0
    with eval_mode(student), eval_mode(teacher):
        for batch in batches:
            student_at, teacher_at, mask = batch.extras.aligned
            s = gather_positions(logits(student, batch.x), student_at)
            t = gather_positions(logits(teacher, batch.extras.teacher_x), teacher_at)
            total += float(uld(s, t, mask).sum())
            count += float(mask.sum())
    return {"uld": total / max(count, 1.0), "aligned_positions": count}
