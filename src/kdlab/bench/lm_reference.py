"""The causal-LM floor: the shortest fast plain-PyTorch distillation step, to measure kdlab's LM step and TRL's GKD
trainer against on the same models, token sequences, batch and optimiser.

One step on a batch of ``B`` sequences of ``P`` prompt + ``C`` completion tokens (GKD, Agarwal et al. 2024):

- supervised (λ = 0): the completion is the data's;
- on-policy (λ = 1): the student samples ``C`` tokens after each prompt with a hand-written KV-cache loop — one
  forward of the prompt (``use_cache=True``, logits of the last position only), then one forward per new token with
  the returned cache (``cache``; ``past_key_values`` before transformers 5.2x) and
  ``torch.multinomial(softmax(logits))`` at temperature 1, no EOS stop — in eval mode under ``torch.no_grad()``;
  nothing leaves the device, so the host never waits inside the loop;
- the teacher scores prompt + completion under ``no_grad``, the student does the same with grad, and the loss is the
  per-token forward KL at τ = 1 on the completion positions only (logits at position ``t`` predict token ``t + 1``)::

      loss = 1 / (B·C) · Σ_b Σ_{t=P−1}^{P+C−2} KL(p_T(· | x_{≤t}) ‖ p_S(· | x_{≤t}))

- one fused AdamW step (``weight_decay=0``: the ``Trainer`` default, so that TRL takes the same step) and
  ``zero_grad``.

What makes it fast rather than merely short: both models compute the vocabulary projection only for the ``C + 1``
last positions (``logits_to_keep``; the last one predicts past the sequence and is dropped), so the ``[B, C, V]``
log-softmax and KL never touch the prompt positions; the prefill of generation keeps the last position's logits
only, as ``generate`` does; no ``.item()``, ``.cpu()`` or host-side check inside a step. Dropout is left as the
models are configured (TRL's ``disable_dropout`` zeroes it in the student): give the runners dropout-free models
to compare the same arithmetic.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.bench.timing import synchronize


@torch.no_grad()
def kv_cache_sample(
    student: nn.Module, prompts: torch.Tensor, max_new_tokens: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``max_new_tokens`` tokens sampled from the student at temperature 1 after each prompt, with a KV cache.

    ``prompts``: ``[B, P]`` token ids; returns ``[B, max_new_tokens]``. The caller chooses the student's mode (the
    floor uses eval mode, as generation should).
    """
    # transformers ≥ 5.2x names the cache argument and output field ``cache``; earlier ones ``past_key_values``
    cache_name = "cache" if "cache" in inspect.signature(student.forward).parameters else "past_key_values"
    output = student(input_ids=prompts, use_cache=True, logits_to_keep=1)
    tokens = []
    for index in range(max_new_tokens):
        probabilities = torch.softmax(output.logits[:, -1].float(), dim=-1)
        token = torch.multinomial(probabilities, 1, generator=generator)
        tokens.append(token)
        if index + 1 < max_new_tokens:  # the last token needs no forward of its own
            output = student(input_ids=token, use_cache=True, **{cache_name: getattr(output, cache_name)})
    return torch.cat(tokens, dim=1)


def floor_step(
    teacher: nn.Module,
    student: nn.Module,
    optimizer: torch.optim.Optimizer,
    input_ids: torch.Tensor,
    prompt_length: int,
    *,
    on_policy: bool,
    max_new_tokens: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One optimizer step of forward-KL distillation on ``input_ids`` (``[B, P + C]``); returns the loss tensor.

    On-policy, the data's completion is replaced by ``max_new_tokens`` tokens the student samples after the first
    ``prompt_length`` tokens. The teacher is expected in eval mode, the student in train mode.
    """
    if on_policy:
        prompts = input_ids[:, :prompt_length]
        student.eval()
        completions = kv_cache_sample(student, prompts, max_new_tokens, generator)
        student.train()
        input_ids = torch.cat([prompts, completions], dim=1)
    completion_length = input_ids.shape[1] - prompt_length
    keep = completion_length + 1  # positions P − 1 … P + C − 1; the last predicts past the end
    with torch.no_grad():
        teacher_logits = teacher(input_ids=input_ids, logits_to_keep=keep).logits[:, :-1]
    student_logits = student(input_ids=input_ids, logits_to_keep=keep).logits[:, :-1]
    log_p_teacher = F.log_softmax(teacher_logits.float(), dim=-1)
    log_p_student = F.log_softmax(student_logits.float(), dim=-1)
    # kl_div(input, target) = Σ target · (log target − input) = KL(teacher ‖ student) per position
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="none", log_target=True).sum(-1)
    loss = kl.sum() / kl.numel()  # every completion position counts: no padding, no EOS stop
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def run_floor(
    teacher: nn.Module,
    student: nn.Module,
    batches: Sequence[torch.Tensor],
    *,
    on_policy: bool,
    warmup: int,
    steps: int,
    prompt_length: int,
    max_new_tokens: int,
    lr: float = 1e-4,
    seed: int = 0,
) -> list[float]:
    """Wall-clock seconds of each of ``steps`` floor steps after ``warmup`` untimed ones, cycling over ``batches``
    (``[B, P + C]`` token ids, on the models' device).

    The step's work is fenced by a device wait at both ends (a no-op on the CPU), so each time is the step's own.
    """
    device = next(student.parameters()).device
    teacher.eval()
    student.train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0, fused=True)
    generator = torch.Generator(device=device).manual_seed(seed)
    seconds = []
    for index in range(warmup + steps):
        batch = batches[index % len(batches)]
        synchronize(device)
        start = time.perf_counter()
        floor_step(
            teacher,
            student,
            optimizer,
            batch,
            prompt_length,
            on_policy=on_policy,
            max_new_tokens=max_new_tokens,
            generator=generator,
        )
        synchronize(device)
        if index >= warmup:
            seconds.append(time.perf_counter() - start)
    return seconds
