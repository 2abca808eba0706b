"""A language-model job's runs: the splits encoded once with the job's tokenizer, the frozen teacher, Hugging Face
causal-LM students, the next-token fidelity figures and the job's table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.data.lm import LMData, LMLoader, LMSplits, LMTokens, encode_lm, eos_id
from kdlab.data.lm.cross import CrossTokens, byte_widths, cross_view, take_cross
from kdlab.data.text import same_tokenizer
from kdlab.losses.cross_tokenizer import shared_vocabulary
from kdlab.methods import MethodContext
from kdlab.methods.lm import LMContext, lm_labels
from kdlab.methods.lm_rows import head_of
from kdlab.models import hf
from kdlab.pipeline.config import Config
from kdlab.pipeline.task import Log, Member, Provided
from kdlab.reporting.tables import Column, comparison_table
from kdlab.tasks.lm.evaluate import aligned_distance, next_token_figures, sample_figures
from kdlab.tasks.lm.models import LMModel, build_student, job_tokenizer, positions, takes_logits_to_keep, vocabulary
from kdlab.tasks.lm.teacher_source import teacher_source
from kdlab.training import distributed
from kdlab.training.engine import BatchSource, Recipe, TeacherSource
from kdlab.training.teachers import Teacher

SPLITS = ("train", "val", "test")
TRAIN_EVAL = 512  # training sequences the "train" figures are measured on (the first, in the split's order)
DEFAULT_LENGTH = 512  # when neither data.max_length nor the teacher's positions say


def take(tokens: LMTokens, rows: torch.Tensor) -> LMTokens:
    """The sequences ``rows`` of ``tokens``."""
    return replace(tokens, input_ids=tokens.input_ids[rows], lengths=tokens.lengths[rows],
                   prompt_lengths=tokens.prompt_lengths[rows])  # fmt: skip


@dataclass
class LMOptions:
    """The data options of the task (not of a data set): sequence length, packing, prompts, micro-batches."""

    max_length: int | None = None
    packing: bool = False
    prompt_length: int | None = None
    micro_batch_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_length", "prompt_length", "micro_batch_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"data.{name} must be a positive integer (or left out); got {value!r}.")
        if self.max_length is not None and self.max_length < 2:
            raise ConfigError(f"data.max_length must be ≥ 2 (a token and the next); got {self.max_length}.")


@dataclass
class LMExperiment:
    """What the runs of one language-model job share: the encoded splits, the tokenizer and the teacher."""

    config: Config
    columns_: tuple[Column, ...]
    splits: LMSplits
    options: LMOptions
    tokenizer: Any
    parts: dict[str, LMTokens]
    device: torch.device
    teacher_model: LMModel | None = None
    given_student: nn.Module | None = None
    teacher: Teacher | None = None
    teacher_name: str | None = None
    trim: bool = False  # the training batches ask for the completions' logits only (see LMLoader)
    bytes: torch.Tensor | None = None  # the bytes each token spells (byte-level tokenizers): CE per byte
    cross_parts: dict[str, CrossTokens] = field(default_factory=dict)  # the teacher's own tokens, when it has them
    shared: tuple[torch.Tensor, torch.Tensor] | None = None  # cross-tokenizer: the tokens both vocabularies hold

    @classmethod
    def prepare(
        cls,
        config: Config,
        columns: tuple[Column, ...],
        splits: LMSplits,
        options: LMOptions,
        device: torch.device,
        provided: Provided | None,
        teacher: LMModel | None,
    ) -> LMExperiment:
        """Encode the splits with the job's tokenizer, after the checks that need no student — before any folder."""
        given = provided.student if provided is not None else None
        tokenizer = job_tokenizer(config.student, teacher, provided.tokenizer if provided else None, splits.tokenizer)
        if teacher is not None and teacher.tokenizer is None:
            teacher.tokenizer = tokenizer
        # a teacher with another tokenizer reads the same texts in its own tokens (cross-tokenizer distillation)
        cross = teacher is not None and teacher.tokenizer is not tokenizer
        cross = cross and not same_tokenizer(teacher.tokenizer, tokenizer)
        limit = positions(teacher.model) if teacher is not None else None
        max_length = options.max_length or min(limit or DEFAULT_LENGTH, DEFAULT_LENGTH)
        if limit is not None and max_length > limit:
            raise ConfigError(
                f"data.max_length={max_length} is longer than the teacher's {limit} positions; use "
                f"data.max_length ≤ {limit}."
            )
        if teacher is not None and vocabulary(teacher.model) < len(teacher.tokenizer if cross else tokenizer):
            raise ConfigError(
                f"The teacher's vocabulary has {vocabulary(teacher.model)} entries but its tokenizer has "
                f"{len(teacher.tokenizer if cross else tokenizer)} tokens; give the teacher the tokenizer it was "
                "trained with."
            )
        parts = {}
        for index, split in enumerate(SPLITS):
            data: LMData = getattr(splits, split)
            if data is None or len(data) == 0:
                continue
            tokens = encode_lm(data, tokenizer, max_length=max_length, packing=options.packing,
                               prompt_length=options.prompt_length)  # fmt: skip
            size = config.data.train_size if split == "train" else config.data.test_size
            if size is not None and size < len(tokens):  # each split draws alone: one test set for any train_size
                generator = torch.Generator().manual_seed(config.data.split_seed * len(SPLITS) + index)
                tokens = take(tokens, torch.randperm(len(tokens), generator=generator)[:size].sort().values)
            if len(tokens):
                parts[split] = tokens
        if "train" not in parts:
            raise ConfigError(
                f"The training split of {splits.name} holds no sequence to train on ({len(splits.train)} examples "
                "read, none with a token to predict after its prompt): the corpus is empty, or every prompt fills "
                "data.max_length. Give text, or a longer data.max_length / shorter data.prompt_length."
            )
        experiment = cls(config, columns, splits, options, tokenizer, parts, device, teacher, given)
        experiment.bytes = byte_widths(tokenizer)
        if cross:
            assert teacher is not None
            experiment.cross_parts = {split: cross_view(tokens, tokenizer, teacher.tokenizer, limit or max_length)
                                      for split, tokens in parts.items()}  # fmt: skip
            experiment.shared = shared_vocabulary(tokenizer, teacher.tokenizer)
        if teacher is not None:
            experiment.teacher = Teacher(teacher.model).to(device)
            experiment.teacher_name = teacher.name
            if config.fsdp and distributed.world_size() > 1:  # never trained: only its forward passes gather units
                distributed.shard(teacher.model)
        return experiment

    @property
    def eos_ids(self) -> tuple[int, ...]:
        eos = eos_id(self.tokenizer)
        return () if eos is None else (eos,)

    def loader(
        self, split: str, seed: int = 0, shuffle: bool = False, trim: bool = False, hidden: bool = False
    ) -> LMLoader:
        data = self.config.data
        return LMLoader(self.parts[split], data.batch_size if shuffle else data.eval_batch_size,
                        micro_batch_size=self.options.micro_batch_size if shuffle else None, device=self.device,
                        shuffle=shuffle, seed=seed, trim_logits=trim, hidden_states=hidden,
                        cross=self.cross_parts.get(split))  # fmt: skip

    def _trim(self, student: nn.Module) -> bool:
        if self.cross_parts:  # the aligned positions index the student's whole sequence of logits
            return False
        return takes_logits_to_keep(student, self.teacher.members[0] if self.teacher is not None else None)

    def build_student(self, member: Member) -> nn.Module:
        student = build_student(self.config.student, self.tokenizer, self.teacher_model, self.given_student)
        self.trim = self._trim(student)  # the run's training batches are made after its student
        return student

    def load_student(self) -> nn.Module:
        return build_student(self.config.student, self.tokenizer, self.teacher_model, None).to(self.device)

    def method_context(self, member: Member, student: nn.Module, epochs: int) -> MethodContext:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        prompts = bool((self.parts["train"].prompt_lengths > 0).any())
        return MethodContext(
            student, self.teacher, vocabulary(student), num_train=len(self.parts["train"]), epochs=epochs,
            label_loss=lm_labels, label_smoothing=False,
            extras=LMContext(eos_ids=self.eos_ids, pad_id=pad if isinstance(pad, int) else 0, has_prompts=prompts,
                             vocab_size=len(self.tokenizer),
                             shared=None if self.shared is None else (self.shared[0].to(self.device),
                                                                      self.shared[1].to(self.device))),
        )  # fmt: skip

    def check(self, member: Member, student: nn.Module, method: nn.Module) -> None:
        if method.needs_teacher and self.teacher is None:
            raise ConfigError(f"Method {member.method.name!r} needs a teacher; give teacher=... (or use method=ce).")
        size = vocabulary(student)
        if size < len(self.tokenizer):
            raise ConfigError(f"The student's vocabulary has {size} entries but the tokenizer has "
                              f"{len(self.tokenizer)} tokens; build it with the job's tokenizer.")  # fmt: skip
        if self.cross_parts and self.config.cache.top_k is not None:
            raise ConfigError("cache.top_k caches the teacher's next tokens in the student's vocabulary; a teacher "
                              "with another tokenizer runs online. Remove cache.top_k.")  # fmt: skip
        top_k, teacher_size = self.config.cache.top_k, vocabulary(self.teacher.members[0]) if self.teacher else 0
        if top_k is not None and self.teacher is not None and top_k > teacher_size:
            raise ConfigError(f"cache.top_k={top_k} but the teacher's vocabulary has {teacher_size} tokens; use "
                              f"1..{teacher_size} (at {teacher_size}: the whole distribution).")  # fmt: skip
        params = getattr(method, "params", None)
        if getattr(params, "chunk_size", None) is not None and head_of(student) is None:
            raise ConfigError(f"method.chunk_size makes the logits from the student's output head, but "
                              f"{type(student).__name__} has none (get_output_embeddings); leave chunk_size out.")
        longest = max(int(t.lengths.max()) for t in self.parts.values())
        new = getattr(params, "max_new_tokens", None)
        generates = getattr(params, "mode", "supervised") != "supervised"
        if self.config.fsdp and distributed.world_size() > 1 and generates and new is None:
            raise ConfigError(
                "With fsdp every process must run the same forward passes, so generation needs a fixed length: give "
                "method.max_new_tokens=N (without it each process would sample its own batch's completion length)."
            )
        if getattr(params, "mode", "supervised") != "supervised" and new:
            longest = max(longest, int(self.parts["train"].prompt_lengths.max()) + new)
        for role, model in (("student", student), ("teacher", self.teacher.members[0] if self.teacher else None)):
            limit = positions(model) if model is not None else None
            if limit is not None and longest > limit:
                raise ConfigError(
                    f"Sequences of up to {longest} tokens (data.max_length, or prompt + method.max_new_tokens) are "
                    f"longer than the {role}'s {limit} positions; shorten them or give a {role} with more positions."
                )

    def prepare_student(self, member: Member, student: nn.Module) -> None:
        """Hugging Face students start as they were loaded or built."""

    def train_batches(self, member: Member) -> BatchSource:
        chunked = getattr(member.params, "chunk_size", None) is not None  # the models give hidden states, no logits
        return self.loader("train", member.seed, shuffle=True, trim=self.trim, hidden=chunked)

    def teacher_source(
        self, member: Member, method: nn.Module, recipe: Recipe, log: Log
    ) -> tuple[TeacherSource | None, dict[str, Any] | None]:
        if not method.needs_teacher or self.teacher is None:
            return None, None
        sharded = {"sharded_over": distributed.world_size()} if distributed.is_sharded(self.teacher.members[0]) else {}
        if self.cross_parts:
            teacher = self.teacher
            return (lambda batch: teacher(batch.extras.teacher_x)), {"kind": "online", "reason": "cross-tokenizer",
                                                                     **sharded}  # fmt: skip
        source, described = teacher_source(
            method, self.teacher, self.teacher_name or "teacher", self.parts["train"], self.config.cache,
            enabled=self.config.teacher_cache and self.teacher_name is not None, precision=recipe.precision,
            device=self.device, batch_size=self.config.data.eval_batch_size,
            trim=takes_logits_to_keep(self.teacher.members[0]), log=log,
        )  # fmt: skip
        return source, described | sharded

    def split_figures(self, student: nn.Module, split: str) -> dict[str, dict[str, float]]:
        """Next-token figures of the student (and the teacher) on a split; the "train" split's first sequences."""
        teacher = self.teacher.members[0] if self.teacher is not None else None
        part, cross = self.parts[split], self.cross_parts.get(split)
        if split == "train" and len(part) > TRAIN_EVAL:
            rows = torch.arange(TRAIN_EVAL)
            part, cross = take(part, rows), None if cross is None else take_cross(cross, rows)
        size = self.config.data.eval_batch_size
        loader = LMLoader(part, size, device=self.device, trim_logits=self._trim(student), cross=cross)
        vocab = len(self.tokenizer)
        if cross is None or teacher is None:
            return next_token_figures(student, teacher, loader.epoch(0), vocab=vocab, token_bytes=self.bytes)
        # another tokenizer: each model on its own tokens of the same texts (CE per byte compares them), and ULD
        own = next_token_figures(student, None, loader.epoch(0), vocab=vocab, token_bytes=self.bytes)["student"]
        assert self.teacher_model is not None
        theirs = next_token_figures(teacher, None, LMLoader(cross.teacher, size, device=self.device).epoch(0),
                                    vocab=len(self.teacher_model.tokenizer),
                                    token_bytes=byte_widths(self.teacher_model.tokenizer))["student"]  # fmt: skip
        return {"student": own | aligned_distance(student, teacher, loader.epoch(0)), "teacher": theirs}

    def validate(self, member: Member, student: nn.Module) -> Callable[[], dict[str, float]] | None:
        return (lambda: self.split_figures(student, "val")["student"]) if "val" in self.parts else None

    def figures(self, member: Member, student: nn.Module) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.config.student.name,
                               "parameters": sum(p.numel() for p in student.parameters())}  # fmt: skip
        teacher_out: dict[str, Any] = {}
        if "test" in self.parts:
            both = self.split_figures(student, "test")
            out["test"] = both["student"]
            if self.teacher is not None:
                teacher_out["test"] = both["teacher"]
            if self.teacher is not None and not self.cross_parts:  # the teacher scores samples in its vocabulary
                teacher = self.teacher.members[0]
                limits = [n for n in (positions(student), positions(teacher)) if n is not None]
                out["test"] |= sample_figures(student, teacher, self.loader("test").epoch(0), eos_ids=self.eos_ids,
                                              seed=member.seed, positions=min(limits, default=None))  # fmt: skip
        out["train"] = self.split_figures(student, "train")["student"]
        if self.teacher is None:
            return {"student": out}
        teacher = {"name": self.teacher_name, "parameters": sum(p.numel() for p in self.teacher.parameters()),
                   **teacher_out}  # fmt: skip
        return {"teacher": teacher, "student": out}

    def record(self, member: Member) -> dict[str, Any]:
        train = self.parts["train"]
        return {
            "data": self.splits.name,
            "task": "causal_lm",
            "train_sequences": len(train),
            "train_tokens": train.targets,
            "train_input_tokens": int(train.lengths.sum()),
            "max_length": train.max_length,
            "packing": self.options.packing,
            "micro_batch_size": self.options.micro_batch_size,
            "vocab_size": len(self.tokenizer),
            "truncated": {split: part.truncated for split, part in self.parts.items()},
            "tokenizers": "cross" if self.cross_parts else "shared",
            "shared_tokens": None if self.shared is None else len(self.shared[0]),
            "dropped": {split: part.dropped for split, part in self.parts.items()},
        }

    def save_model(self, path: Path, student: nn.Module, metrics: dict[str, Any]) -> None:
        record = {"task": "causal_lm", "metrics": metrics.get("test", {})}
        hf.save_pretrained(path.parent, student, self.tokenizer, record)

    def table(self, rows: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> str:
        teacher = None
        for _, summaries in rows:
            for summary in summaries:
                teacher = teacher or summary.get("teacher", {}).get("test")
        return comparison_table(self.columns_, rows, teacher)

    def columns(self) -> list[Column]:
        return list(self.columns_)
