"""TRL's GKD trainer (``trl.experimental.gkd.GKDTrainer``, TRL 1.16) on the causal-LM benchmark's models, token
sequences and batch, timed per optimizer step — the "what a TRL user gets" column of ``kdlab bench lm``.

TRL is a benchmark-only dependency: it is imported here, on first use, and nowhere else in kdlab.

**The data TRL sees.** ``GKDTrainer`` batches with ``DataCollatorForChatML`` (``trl/experimental/utils.py``). Per
example it takes either chat ``messages`` (templated and tokenised by the collator on every step) or pre-tokenised
``input_ids`` with a ``completion_mask`` (0 on the prompt, 1 on the completion), which it uses as they are — no
tokeniser runs. We give the latter, so TRL trains on exactly the ids of ``input_ids``: the collator's ``input_ids``
are ours, its ``labels`` are ours with −100 on the prompt, its ``prompts`` (what the student continues on-policy) are
our first ``prompt_length`` ids. The collator reads a ``prompt`` text field (or ``messages``) before it looks for
``input_ids`` and fails without one, so each row also carries its decoded prompt; it is never tokenised, because the
``completion_mask`` is present. The tokenizer is needed for its pad id (generation and the collator's padding; every
row has the same length here, so nothing is padded).

**What we set.** Always (the workload, the same for every runner): batch size, ``max_steps`` = warm-up + timed
steps, ``lmbda`` (0: the data's completions; 1: the student's samples), ``beta`` (0: forward KL(teacher ‖ student)
in TRL's convention), ``temperature=1.0``, ``max_new_tokens``, learning rate 1e-4 with a constant schedule (AdamW is
the default optimiser: ``adamw_torch_fused``, weight decay 0), ``seq_kd=False``, ``dataloader_drop_last=True`` (every
step has ``batch_size`` rows), and no EOS stop: the student's generation config loses its ``eos_token_id`` when
training begins (``Trainer.train`` first copies the tokenizer's EOS into it), so every prompt gets exactly
``max_new_tokens`` sampled tokens, as in the floor. ``tuned=True`` adds what a user who cares about speed sets on a
CPU or a GPU: float32 (``bf16=False``, ``fp16=False``), ``gradient_checkpointing=False`` (which also turns generation's
KV cache back on), no logging, saving or evaluation, ``report_to=[]``, ``disable_tqdm=True``,
``dataloader_num_workers=0``, ``logging_nan_inf_filter=False`` (the ``Trainer`` otherwise reads ``isnan``/``isinf``
of every step's loss on the host: a device sync per step) and ``max_grad_norm=0`` (no clipping, as the floor).
``tuned=False`` keeps GKDConfig's defaults for all of these — in TRL 1.16 (``trl/trainer/base_config.py``,
``sft_config.py``, ``experimental/gkd/gkd_config.py``): ``bf16=True`` (autocast of both models' forwards),
``gradient_checkpointing=True`` (and so ``use_cache=False`` in generation: every new token re-runs the whole
sequence), ``logging_steps=10``, ``save_strategy="steps"`` with a checkpoint written at the last step, a tqdm bar,
``max_grad_norm=1.0``, ``logging_nan_inf_filter=True``; only ``use_cpu=True`` is added on a CPU, without which
``TrainingArguments`` refuses bf16 there.

**What TRL does per step that the floor does not** (the clock runs from ``on_step_begin`` to ``on_step_end``, so the
data loader — Arrow rows to Python lists to tensors in the collator, plus a ``[B, L, 2]`` byte-offset tensor — and
logging, saving and evaluation stay outside it):

- ``_prepare_inputs`` copies the batch dict to the device (the floor's ids live there already);
- on-policy: ``unwrap_model_for_generation`` (accelerate unwrap; turns gradient checkpointing off and back on when
  it is on), then ``model.generate`` with ``GenerationConfig(do_sample=True, top_k=0, top_p=1.0, temperature)``: a
  logits-processor list and stopping criteria run per token, an "all finished?" test read on the host every token
  (a device sync per token on a GPU; transformers 5.25 defers it on MPS only), ``generate``'s input and cache
  bookkeeping; the student stays in train mode (``disable_dropout`` zeroed its dropout at construction); then new
  attention mask and labels are built from the sequences;
- the loss (``GKDTrainer.compute_loss``): both models project every position onto the vocabulary (``[B, L, V]``
  logits; the floor keeps the ``C + 1`` it needs), and ``generalized_jsd_loss`` log-softmaxes and KLs all
  ``B × (L − 1) × V`` positions, prompt included, before it masks them by boolean indexing (a copy) — with a 96-token
  prompt and a 32-token completion about four times the floor's loss work and memory; then ``empty_cache()`` after
  every loss (``torch.cuda.empty_cache`` on a GPU: the allocator's cached blocks are returned and re-acquired next
  step);
- ``Trainer`` bookkeeping: the loss check and clipping above (default), ``floating_point_ops``, the LR scheduler step,
  the callbacks, ``model.zero_grad``.

**Conventions of TRL 1.16's GKD loss worth knowing** (``trl/experimental/gkd/gkd_trainer.py``):

- ``GKDTrainer.compute_loss`` never passes ``temperature`` to ``generalized_jsd_loss``, so the divergence is always at
  τ = 1 whatever ``GKDConfig.temperature`` (default 0.9) says; that temperature only shapes the sampling. No τ².
- ``generalized_jsd_loss``'s ``reduction="batchmean"`` means two things: with ``labels`` it divides by the number of
  unmasked tokens (a per-token mean), without them by ``jsd.size(0)``, the batch size (a per-sequence sum over
  positions). ``compute_loss`` passes labels and, for models whose ``forward`` takes ``**kwargs`` (GPT-2 does), the
  ``Trainer``'s ``num_items_in_batch``, which takes precedence: the sum is divided by a token count, so the loss here
  is per token, as the floor's.
- That ``num_items_in_batch`` is counted by ``Trainer._get_num_items_in_batch`` from the data set's labels *before*
  ``GKDTrainer.training_step`` replaces them with the on-policy ones: for λ > 0 the sum over generated tokens is
  divided by the number of the data's completion tokens. Equal here (completion length = ``max_new_tokens``, no EOS
  stop); with EOS stops or other completion lengths the on-policy loss is off by generated ÷ data tokens.
- β = 0 and β = 1 are special-cased as plain KL; the generalized JSD itself tends to 0 as β → 0 (≈ β·KL(T ‖ S)), so
  the loss's scale jumps at both ends of β's range.
- λ is drawn per step for the whole batch (``random.random() <= lmbda``, Python's global RNG), not per sequence.
"""

from __future__ import annotations

import copy
import importlib
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.bench.timing import synchronize


def import_trl() -> Any:
    """``trl.experimental.gkd``, imported on first use (TRL is a benchmark-only dependency)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
            return importlib.import_module("trl.experimental.gkd")
    except ImportError as error:
        raise ImportError(
            "`kdlab bench lm` compares against TRL's GKD trainer (trl.experimental.gkd), which needs TRL 1.16: "
            "pip install 'kdlab[bench]' (or pip install 'trl==1.16.*')"
        ) from error


def gkd_dataset(input_ids: torch.Tensor, prompt_length: int, tokenizer: Any) -> Any:
    """The rows ``DataCollatorForChatML`` takes pre-tokenised: ``input_ids``, a ``completion_mask`` that is 0 on the
    first ``prompt_length`` ids and 1 after, and the decoded ``prompt`` the collator insists on but never tokenises
    (see the module docstring). ``input_ids``: ``[N, P + C]``."""
    from datasets import Dataset

    rows = input_ids.tolist()
    completion_length = input_ids.shape[1] - prompt_length
    return Dataset.from_dict(
        {
            "input_ids": rows,
            "completion_mask": [[0] * prompt_length + [1] * completion_length] * len(rows),
            "prompt": tokenizer.batch_decode([row[:prompt_length] for row in rows]),
        }
    )


def gkd_arguments(
    *,
    lmbda: float,
    beta: float,
    batch_size: int,
    max_new_tokens: int,
    max_steps: int,
    tuned: bool,
    output_dir: str | Path,
    device: torch.device,
    lr: float = 1e-4,
    seed: int = 0,
) -> dict[str, Any]:
    """The ``GKDConfig`` keyword arguments of a run: the workload always, the speed settings when ``tuned``."""
    arguments: dict[str, Any] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": batch_size,
        "max_steps": max_steps,
        "lmbda": lmbda,
        "beta": beta,
        "temperature": 1.0,
        "max_new_tokens": max_new_tokens,
        "learning_rate": lr,
        "lr_scheduler_type": "constant",
        "seq_kd": False,
        "dataloader_drop_last": True,
        "seed": seed,
    }
    if tuned:
        arguments.update(
            bf16=False,
            fp16=False,
            gradient_checkpointing=False,
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            disable_tqdm=True,
            dataloader_num_workers=0,
            logging_nan_inf_filter=False,
            max_grad_norm=0.0,
        )
    elif device.type == "cpu":
        arguments["use_cpu"] = True  # the default bf16 is refused on a CPU without it
    return arguments


def step_clock() -> Any:
    """A ``TrainerCallback`` whose ``seconds`` gets each optimizer step's wall time, from ``on_step_begin`` to
    ``on_step_end``, with a device wait at both ends (a no-op on the CPU)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.start = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            synchronize(args.device)
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            synchronize(args.device)
            self.seconds.append(time.perf_counter() - self.start)

    return StepClock()


def _no_eos_stop() -> Any:
    """A ``TrainerCallback`` that clears the student's EOS id when training begins, after ``Trainer.train`` has
    copied the tokenizer's into it (``align_special_tokens``): ``generate`` fills a missing EOS from the model's
    generation config, and the benchmark's completions never stop early."""
    from transformers import TrainerCallback

    class NoEosStop(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            model.generation_config.eos_token_id = None

    return NoEosStop()


def gkd_trainer(
    teacher: nn.Module,
    student: nn.Module,
    tokenizer: Any,
    input_ids: torch.Tensor,
    prompt_length: int,
    *,
    lmbda: float,
    beta: float = 0.0,
    batch_size: int,
    max_new_tokens: int,
    max_steps: int,
    tuned: bool = True,
    output_dir: str | Path,
    lr: float = 1e-4,
    seed: int = 0,
    callbacks: Sequence[Any] = (),
) -> Any:
    """A ``GKDTrainer`` on copies of ``teacher`` and ``student`` (TRL edits its models: dropout, special tokens,
    checkpointing) and the sequences ``input_ids`` (``[N, P + C]``, ``N ≥ batch_size``); ``callbacks`` are added to
    TRL's."""
    gkd = import_trl()
    if tokenizer.pad_token_id is None:
        raise ValueError("TRL's GKD needs a tokenizer with a pad token (its collator and generation read it)")
    if input_ids.shape[0] < batch_size:
        raise ValueError(f"{input_ids.shape[0]} sequences make no batch of {batch_size}")
    device = next(student.parameters()).device
    arguments = gkd_arguments(
        lmbda=lmbda,
        beta=beta,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        max_steps=max_steps,
        tuned=tuned,
        output_dir=output_dir,
        device=device,
        lr=lr,
        seed=seed,
    )
    trainer = gkd.GKDTrainer(
        model=copy.deepcopy(student),
        teacher_model=copy.deepcopy(teacher),
        args=gkd.GKDConfig(**arguments),
        train_dataset=gkd_dataset(input_ids, prompt_length, tokenizer),
        processing_class=tokenizer,
        callbacks=[_no_eos_stop(), *callbacks],
    )
    generation = trainer.generation_config
    generation.eos_token_id = None  # GKDTrainer copied the model's; NoEosStop clears the model's own later
    if not (generation.do_sample and generation.temperature == 1.0 and generation.max_new_tokens == max_new_tokens):
        raise RuntimeError(f"TRL would not sample {max_new_tokens} tokens at temperature 1: {generation}")
    return trainer


def run_trl_gkd(
    teacher: nn.Module,
    student: nn.Module,
    tokenizer: Any,
    input_ids: torch.Tensor,
    prompt_length: int,
    *,
    lmbda: float,
    beta: float = 0.0,
    batch_size: int,
    max_new_tokens: int,
    warmup: int,
    steps: int,
    tuned: bool = True,
    output_dir: str | Path,
    lr: float = 1e-4,
    seed: int = 0,
) -> list[float]:
    """Wall-clock seconds of each of ``steps`` GKD optimizer steps after ``warmup`` untimed ones, TRL's setup
    (trainer, data loader, optimizer) excluded; see the module docstring for what a step holds. ``Trainer.train``
    seeds the global RNGs (Python, NumPy, torch) with ``seed`` as it starts."""
    clock = step_clock()
    trainer = gkd_trainer(
        teacher,
        student,
        tokenizer,
        input_ids,
        prompt_length,
        lmbda=lmbda,
        beta=beta,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        max_steps=warmup + steps,
        tuned=tuned,
        output_dir=output_dir,
        lr=lr,
        seed=seed,
        callbacks=[clock],
    )
    trainer.train()
    return clock.seconds[warmup:]
