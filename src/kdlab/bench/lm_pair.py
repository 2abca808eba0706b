"""The causal-LM pairs of ``kdlab bench``: GPT-2 teacher → student pairs, their token sequences, and the names of the
modes that :mod:`kdlab.bench.lm_modes` runs on them — kdlab's engine, the plain-PyTorch floor
(:mod:`kdlab.bench.lm_reference`) and TRL's GKD trainer (:mod:`kdlab.bench.lm_trl`), each supervised (the data's
completions) and on-policy (completions the student samples); and kdlab's supervised step with the top-k teacher
cache (``kdlab_cached``) and with the chunked losses (``kdlab_chunked``).

Two pairs: ``lm`` (real sequences of the standard library's source, V = 4,096; every mode) and ``lm-32k`` (random
token ids, V = 32,000, 8 × 512 tokens all trained: the ``[tokens × V]`` logits dominate the step's memory; kdlab's
supervised, chunked and cached steps and the supervised floor). A step's time and memory do not depend on which ids
it reads, so random ids measure the same step as text would.

The models: ``transformers.GPT2LMHeadModel`` with SDPA attention, no dropout and ``use_cache=False`` for the training
forwards (as ``kdlab distill`` sets it; generation asks for a cache), randomly initialised — the time of a step does
not depend on the weights. The sequences (``lm``): full-length windows of ``P + C`` tokens of the stdlib corpus's
training split in its byte-level BPE (:func:`kdlab.data.lm.stdlib`), the first ``P`` the prompt (``encode_lm(...,
prompt_length=P)``); (``lm-32k``) uniform random ids in ``[1, V)``, no tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.data.lm import LMTokens

TRL_MISSING = "trl not installed: pip install 'kdlab[bench]'"
LM_MODES = (
    "kdlab_supervised", "kdlab_on_policy", "kdlab_cached", "kdlab_chunked", "floor_supervised", "floor_on_policy",
    "trl_supervised", "trl_on_policy", "trl_on_policy_defaults",
)  # fmt: skip
MEMORY_MODES = ("kdlab_supervised", "kdlab_chunked", "kdlab_cached", "floor_supervised")  # the 32k pair's
TOP_K = 32  # kdlab_cached: the teacher's k most likely tokens per trained position
CHUNK_SIZE = 1024  # kdlab_chunked: trained positions (rows) per chunk
LM_MODE_LABELS = {
    "kdlab_supervised": "kdlab lm_kd, supervised",
    "kdlab_on_policy": "kdlab lm_kd, on-policy (λ=1)",
    "kdlab_cached": "kdlab lm_kd, supervised, top-k cache",
    "kdlab_chunked": "kdlab lm_kd, supervised, chunked",
    "floor_supervised": "floor, supervised",
    "floor_on_policy": "floor, on-policy",
    "trl_supervised": "TRL GKD tuned, λ=0 β=0",
    "trl_on_policy": "TRL GKD tuned, λ=1 β=0",
    "trl_on_policy_defaults": "TRL GKD defaults, λ=1 β=0",
}
LR = 1e-4
PHASES = ("generate", "student_forward", "teacher_forward", "loss", "student_backward", "optimizer")


@dataclass(frozen=True)
class LMPair:
    """A GPT-2 teacher of ``teacher_layers`` blocks → a student of ``student_layers`` blocks, both ``width`` wide with
    ``heads`` heads, over a ``vocab_size``-token BPE of the stdlib corpus (``random_ids``: uniform random ids, no
    tokenizer); batches of ``batch_size`` sequences of ``prompt_length`` + ``completion_length`` tokens; AdamW at
    :data:`LR`, constant, no weight decay (every mode); ``modes`` the pair's, ``warmup`` and ``steps`` its defaults."""

    name: str
    teacher_layers: int = 4
    student_layers: int = 2
    width: int = 128
    heads: int = 4
    vocab_size: int = 4096
    batch_size: int = 8
    prompt_length: int = 96
    completion_length: int = 32
    aliases: tuple[str, ...] = ()
    random_ids: bool = False
    modes: tuple[str, ...] = LM_MODES
    warmup: int = 3
    steps: int = 10
    unit = "tokens"

    @property
    def length(self) -> int:
        return self.prompt_length + self.completion_length

    @property
    def teacher_name(self) -> str:
        return f"gpt2({self.teacher_layers}×{self.width}, {self.heads} heads)"

    @property
    def student_name(self) -> str:
        return f"gpt2({self.student_layers}×{self.width}, {self.heads} heads)"

    @property
    def data_label(self) -> str:
        if self.random_ids:
            return (
                f"random token ids over {self.vocab_size:,} tokens (a step's time and memory do not depend on "
                f"the ids), {self.prompt_length} + {self.completion_length} tokens a sequence; random weights"
            )
        return (
            f"stdlib source, byte-level BPE of {self.vocab_size:,} tokens, {self.prompt_length} + "
            f"{self.completion_length} tokens a sequence; random weights"
        )


LM_PAIRS = {p.name: p for p in (
    LMPair("stdlib-gpt2-4x128-2x128", aliases=("lm",)),
    LMPair("random-gpt2-4x256-2x256-32k", 4, 2, 256, 4, 32_000, 8, 0, 512, aliases=("lm-32k",), random_ids=True,
           modes=MEMORY_MODES, warmup=1, steps=3),
)}  # fmt: skip


def find_lm_pair(name: str) -> LMPair | None:
    """The LM pair called (or aliased) ``name``, None when there is none."""
    return next((p for p in LM_PAIRS.values() if name == p.name or name in p.aliases), None)


def gpt2(vocab_size: int, layers: int, width: int, heads: int, positions: int, seed: int) -> nn.Module:
    """A randomly initialised GPT-2 LM (seeded), dropout 0, SDPA attention, no key–value cache in training
    forwards (generation asks for one); id 0 (the BPE's ``<|endoftext|>``) as EOS, BOS and padding."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=vocab_size, n_positions=positions, n_embd=width, n_layer=layers, n_head=heads, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, pad_token_id=0, use_cache=False,
        attn_implementation="sdpa",
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


@dataclass
class LMWorkload:
    """What the modes share: ``input_ids`` ``[N, P + C]`` (host), the prompt length ``P``, the tokenizer (None for
    random ids), the teacher and the student's initial weights (every mode trains a copy)."""

    input_ids: torch.Tensor
    prompt_length: int
    tokenizer: Any
    teacher: nn.Module
    student: nn.Module
    seed: int = 0

    @property
    def completion_length(self) -> int:
        return self.input_ids.shape[1] - self.prompt_length

    def tokens(self) -> LMTokens:
        n, length = self.input_ids.shape
        lengths, prompts = torch.full((n,), length), torch.full((n,), self.prompt_length)
        return LMTokens(self.input_ids, lengths, prompts, max_length=length)

    def save(self, folder: Path) -> None:
        """Write the workload into ``folder`` (read back by :meth:`load` in each mode's process)."""
        from transformers.utils import logging

        folder.mkdir(parents=True, exist_ok=True)
        shown = logging.is_progress_bar_enabled()
        logging.disable_progress_bar()  # no "Writing model shards" bars in the bench's output
        try:
            self.teacher.save_pretrained(folder / "teacher")
            self.student.save_pretrained(folder / "student")
        finally:
            if shown:
                logging.enable_progress_bar()
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder / "tokenizer")
        torch.save({"input_ids": self.input_ids, "prompt_length": self.prompt_length, "seed": self.seed},
                   folder / "sequences.pt")  # fmt: skip

    @classmethod
    def load(cls, folder: Path) -> LMWorkload:
        import transformers

        state = torch.load(folder / "sequences.pt")
        models = [transformers.GPT2LMHeadModel.from_pretrained(folder / role) for role in ("teacher", "student")]
        saved = folder / "tokenizer"
        tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(saved) if saved.is_dir() else None
        return cls(state["input_ids"], state["prompt_length"], tokenizer, *models, seed=state["seed"])

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer) if self.tokenizer is not None else int(self.teacher.config.vocab_size)


def load_lm_workload(pair: LMPair, sequences: int, seed: int = 0) -> LMWorkload:
    """``sequences`` full-length training sequences of the stdlib corpus (a seeded draw; ``random_ids``: uniform ids
    in ``[1, V)``, seeded) and the pair's models."""
    from kdlab.data.lm import encode_lm, stdlib

    if pair.random_ids:
        generator = torch.Generator().manual_seed(seed)
        ids = torch.randint(1, pair.vocab_size, (sequences, pair.length), generator=generator)
        teacher = gpt2(pair.vocab_size, pair.teacher_layers, pair.width, pair.heads, pair.length, seed)
        student = gpt2(pair.vocab_size, pair.student_layers, pair.width, pair.heads, pair.length, seed + 1)
        return LMWorkload(ids, pair.prompt_length, None, teacher.eval(), student, seed)

    splits = stdlib(vocab_size=pair.vocab_size)
    tokens = encode_lm(splits.train, splits.tokenizer, max_length=pair.length, prompt_length=pair.prompt_length)
    full = torch.nonzero(tokens.lengths == pair.length).squeeze(1)
    rows = full[torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))[:sequences]]
    ids = tokens.input_ids[rows.sort().values, : pair.length]
    vocab = len(splits.tokenizer)
    teacher = gpt2(vocab, pair.teacher_layers, pair.width, pair.heads, pair.length, seed)
    student = gpt2(vocab, pair.student_layers, pair.width, pair.heads, pair.length, seed + 1)
    return LMWorkload(ids, pair.prompt_length, splits.tokenizer, teacher.eval(), student, seed)
