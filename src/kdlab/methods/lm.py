"""Token-level distillation of causal language models: ``lm_kd``, one method for every divergence and data mode.

The loss on a batch is ``(1 − ce_weight) · D + ce_weight · CE`` where ``D`` is a per-token divergence between the
teacher's and the student's next-token distributions (:mod:`kdlab.losses.tokens`: forward KL, reverse KL, generalized
JSD(β), total variation, skew KL) and ``CE`` the next-token cross-entropy with the sequence's own tokens; both are
summed over the trained tokens of the gradient-accumulation window and divided by their count.

Where the trained sequences come from (``mode``), after Agarwal et al. 2024 (GKD):

- ``supervised``: the data's sequences (the completions, for prompt/completion data).
- ``sequence``: sequence-level KD (Kim & Rush 2016) — the teacher continues each prompt (sampled at
  ``generation_temperature``; 0 is greedy) and the student learns those completions and the teacher's distributions
  on them.
- ``on_policy``: with probability ``lmbda`` per optimiser step the student continues the prompts itself and the
  teacher scores what it wrote (GKD); otherwise the data's completions. ``lmbda = 1`` is fully on-policy.

A continuation keeps its tokens up to and including the first end-of-sequence id (``eos_ids``; default the
tokenizer's; ``[]``: none). The generation temperature is separate from the loss ``temperature``. The draws come
from a generator seeded by the run's seed and the step, so an interrupted run resumes with the same continuations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.data.lm.alignment import gather_positions
from kdlab.data.lm.loader import keep_logits
from kdlab.losses.cross_tokenizer import hybrid, uld
from kdlab.losses.tokens import (
    IGNORE_INDEX,
    divide_by_tokens,
    forward_kl,
    jsd,
    next_token_cross_entropy,
    next_token_targets,
    prediction_logits,
    reduce_tokens,
    reverse_kl,
    skew_kl,
    tvd,
)
from kdlab.losses.top_k import Tail
from kdlab.methods.base import MethodContext, register_method, require
from kdlab.methods.lm_rows import head_of, lm_kd_sums
from kdlab.ops.sampling import sample_completions

LM = ("causal_lm",)
Divergence = Literal["forward_kl", "reverse_kl", "jsd", "tvd", "skew_kl", "uld", "hybrid"]
CROSS = ("uld", "hybrid")  # the divergences between models with different tokenizers
Mode = Literal["supervised", "sequence", "on_policy"]


@dataclass
class LMContext:
    """What the language-model task tells its methods: the end-of-sequence ids and padding id of the tokenizer,
    whether the training sequences have prompts to continue, the tokenizer's length and — when the teacher reads
    with another tokenizer — the tokens both vocabularies hold (:func:`kdlab.losses.shared_vocabulary`)."""

    eos_ids: tuple[int, ...] = ()
    pad_id: int = 0
    has_prompts: bool = False
    vocab_size: int | None = None  # the tokenizer's length: logits of padded vocabularies are cut to it
    shared: tuple[torch.Tensor, torch.Tensor] | None = None  # cross-tokenizer: (student ids, teacher ids) of S


def lm_labels(student: ModelOutput, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
    """Next-token cross-entropy of the student's logits ``[B, T, V]`` with the batch's labels ``[B, T]``, summed over
    the trained tokens and divided by the window's token count (``batch.extras.num_tokens``)."""
    targets, mask = next_token_targets(batch.y)
    per_token = next_token_cross_entropy(prediction_logits(student.logits), targets, mask)
    return reduce_tokens(per_token, mask, getattr(batch.extras, "num_tokens", None))


@dataclass
class LMKDParams:
    """``lm_kd``'s hyper-parameters (defaults: forward KL at τ = 1 on the data's sequences; GKD's β = λ = 0.5)."""

    divergence: Divergence = "forward_kl"
    beta: float = 0.5  # JSD(β): the teacher's weight in the mixture M = βp + (1 − β)q
    skew: float = 0.1  # skew KL: KL(p ‖ αp + (1 − α)q), α = skew (DistiLLM)
    temperature: float = 1.0
    tau_squared: bool = True  # multiply the divergence by τ² (Hinton et al.)
    ce_weight: float = 0.0
    mode: Mode = "supervised"
    lmbda: float = 0.5  # on_policy: the probability of a student-generated step
    max_new_tokens: int | None = None  # None: the batch's longest completion
    generation_temperature: float = 1.0
    top_k: int = 0  # generation: sample among the k most likely tokens (0: all)
    eos_ids: list[int] | None = field(default=None)  # None: the tokenizer's end-of-sequence id
    chunk_size: int | None = None  # make the student's logits this many positions at a time (None: all at once)
    hybrid_divergence: Literal["forward_kl", "reverse_kl", "jsd"] = "forward_kl"  # hybrid's shared-token part
    uld_weight: float = 1.0  # hybrid: the weight of ULD on the tokens only one vocabulary holds
    top_k_tail: Tail = "bucket"  # a top-k cached teacher's missing mass: bucket, renormalise or raw

    def __post_init__(self) -> None:
        for name in ("beta", "skew", "lmbda", "ce_weight"):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, f"method.{name} must lie in [0, 1]; got {value}.")
        new, temperature = self.max_new_tokens, self.generation_temperature
        require(new is None or new >= 1, f"method.max_new_tokens must be ≥ 1 (or null: the data's); got {new}.")
        require(temperature >= 0, f"method.generation_temperature must be ≥ 0 (0: greedy); got {temperature}.")
        require(self.top_k >= 0, f"method.top_k must be ≥ 0 (0: every token); got {self.top_k}.")
        require(self.chunk_size is None or self.chunk_size >= 1,
                f"method.chunk_size must be ≥ 1 (positions per chunk; null: no chunking); got {self.chunk_size}.")
        require(self.top_k_tail != "raw" or self.divergence == "forward_kl",
                f"method.top_k_tail=raw is DistillKit's partial forward KL; it does not define "
                f"divergence={self.divergence}. Use top_k_tail=bucket (any divergence) or divergence=forward_kl.")


DIVERGENCES: dict[str, Callable[..., torch.Tensor]] = {
    "forward_kl": forward_kl, "reverse_kl": reverse_kl, "jsd": jsd, "tvd": tvd, "skew_kl": skew_kl,
}  # fmt: skip


@register_method("lm_kd", LMKDParams, tasks=LM)
class LMKD(nn.Module):
    """Token-level KD of causal LMs: forward/reverse KL, JSD(β), TVD or skew KL; supervised, sequence-level or
    on-policy (GKD) data."""

    needs_teacher = True
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def __init__(self, params: LMKDParams, context: MethodContext) -> None:
        super().__init__()
        self.params, self.label_loss = params, context.label_loss
        # the models generate; kept out of the module tree so that their weights are neither optimised through the
        # method nor saved in its state
        self.models = (context.student, context.teacher)
        lm = context.extras if isinstance(context.extras, LMContext) else LMContext()
        self.eos_ids = tuple(params.eos_ids) if params.eos_ids is not None else lm.eos_ids
        self.pad_id = lm.pad_id
        require(params.mode == "supervised" or lm.has_prompts,
                f"method.mode={params.mode} continues prompts, but the training sequences have none: give "
                "prompt/completion or chat data, or data.prompt_length=P to make the first P tokens of each "
                "plain-text sequence its prompt.")  # fmt: skip
        options = {"beta": params.beta} if params.divergence == "jsd" else {}
        options |= {"skew": params.skew} if params.divergence == "skew_kl" else {}
        self.options = options
        self.vocab_size = lm.vocab_size
        cross = lm.shared is not None
        if cross != (params.divergence in CROSS):
            raise ConfigError(
                f"The teacher reads with another tokenizer than the student, so the two vocabularies differ: "
                f"method.divergence={params.divergence} compares one vocabulary token by token. Use "
                "method.divergence=uld (sorted probabilities) or hybrid (shared tokens by a divergence, the rest by "
                "ULD)." if cross else
                f"method.divergence={params.divergence} compares models with different tokenizers, but the teacher "
                "reads with the student's: use forward_kl, reverse_kl, jsd, tvd or skew_kl."
            )
        require(not cross or (params.mode == "supervised" and params.chunk_size is None),
                "Cross-tokenizer distillation trains on the data's sequences with the full logits: use "
                "method.mode=supervised and no method.chunk_size.")  # fmt: skip
        self.shared = lm.shared
        # the draws of generation: from the run's seed (the pipeline seeds the RNG before building) and the step
        self.seed = int(torch.randint(0, 2**62, (), generator=None)) if params.mode != "supervised" else 0
        self.steps = 0

    def get_extra_state(self) -> dict[str, int]:
        return {"seed": self.seed, "steps": self.steps}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.seed, self.steps = int(state["seed"]), int(state["steps"])

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]:
        assert teacher is not None
        p = self.params
        if self.shared is not None:
            return self._across(student, teacher, batch)
        targets, mask = next_token_targets(batch.y)
        heads = (head_of(self.models[0]), head_of(self.models[1].members[0]) if self.models[1] is not None else None)
        kd, ce = lm_kd_sums(
            student, teacher, targets, mask, divergence=DIVERGENCES[p.divergence], options=self.options,
            temperature=p.temperature, tau_squared=p.tau_squared, tail=p.top_k_tail, chunk_size=p.chunk_size,
            heads=heads, with_ce=p.ce_weight > 0, vocab=self.vocab_size,
        )  # fmt: skip
        count = batch.extras.num_tokens
        terms = {"kd": (1.0 - p.ce_weight) * divide_by_tokens(kd, count)}
        if p.ce_weight > 0:
            terms["ce"] = p.ce_weight * divide_by_tokens(ce, count)
        return terms

    def _across(self, student: ModelOutput, teacher: ModelOutput, batch: Batch) -> dict[str, torch.Tensor]:
        """Cross-tokenizer: ULD or hybrid at the aligned positions (:mod:`kdlab.data.lm.cross`), divided by the
        window's aligned positions; the label term on the student's own next tokens."""
        p, extras = self.params, batch.extras
        assert self.shared is not None and extras.aligned is not None
        student_at, teacher_at, mask = extras.aligned
        s, t = gather_positions(student.logits, student_at), gather_positions(teacher.logits, teacher_at)
        if p.divergence == "uld":
            per = uld(s, t, mask, temperature=p.temperature, tau_squared=p.tau_squared)
        else:
            per = hybrid(s, t, mask, student_ids_of_shared=self.shared[0], teacher_ids_of_shared=self.shared[1],
                         divergence=p.hybrid_divergence, beta=p.beta, temperature=p.temperature,
                         tau_squared=p.tau_squared, uld_weight=p.uld_weight)  # fmt: skip
        terms = {"kd": (1.0 - p.ce_weight) * divide_by_tokens(per.sum(), extras.num_aligned)}
        if p.ce_weight > 0:
            terms["ce"] = p.ce_weight * lm_labels(student, batch)
        return terms

    def _generator(self, device: torch.device) -> torch.Generator:
        return torch.Generator(device=device).manual_seed((self.seed + 1_000_003 * self.steps) % 2**63)

    def prepare_batches(self, batches: list[Batch]) -> list[Batch]:
        """The step's sequences: the data's, or continuations sampled by the teacher (``sequence``) or, with
        probability ``lmbda``, by the student (``on_policy``), with the window's token count recounted."""
        p = self.params
        if p.mode == "supervised":
            return batches
        device = batches[0].y.device
        generator = self._generator(device)
        coin = torch.Generator().manual_seed(self.seed ^ self.steps)
        self.steps += 1
        if p.mode == "on_policy" and float(torch.rand((), generator=coin)) >= p.lmbda:
            return batches
        student, teacher = self.models
        model = student if p.mode == "on_policy" else teacher.members[0]
        out = []
        for batch in batches:
            extras = batch.extras
            new_tokens = p.max_new_tokens or max(int(extras.lengths.max()) - extras.prompt_width, 1)
            made = sample_completions(
                model, batch.x["input_ids"], extras.prompt_lengths, extras.prompt_width,
                max_new_tokens=new_tokens, temperature=p.generation_temperature, top_k=p.top_k,
                eos_ids=self.eos_ids, pad_id=self.pad_id, generator=generator,
            )  # fmt: skip
            x, y = made.inputs, made.labels
            if "logits_to_keep" in batch.x:  # the models compute the logits of the continuations only (or none)
                x, y = keep_logits(x, y, extras.prompt_width - 1, hidden="output_hidden_states" in batch.x)
            out.append(Batch(x=x, y=y, index=batch.index, extras=extras))
        count = torch.stack([(b.y[:, 1:] != IGNORE_INDEX).sum() for b in out]).sum()
        return [replace(b, extras=replace(b.extras, num_tokens=count)) for b in out]

    @property
    def record(self) -> dict[str, Any]:
        """What a run's summary says of the method beyond its hyper-parameters."""
        return {"generation_eos_ids": list(self.eos_ids)}
