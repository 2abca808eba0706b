"""``kdlab cache estimate``: what a top-k teacher cache of a language model takes, per trained token and for a
corpus, before building one."""

from __future__ import annotations

import argparse

from kdlab.core.errors import ConfigError


def _size(count: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:,.2f} {unit}"
    return f"{count:,.0f} B"


def trained_tokens(data: str, options: list[str]) -> tuple[int, int]:
    """(trained next-token targets of ``data``'s training split, its tokenizer's vocabulary) with the options."""
    from kdlab.pipeline.config import apply_overrides, resolve
    from kdlab.tasks.lm.experiment import DEFAULT_LENGTH
    from kdlab.tasks.lm.task import options_of, read_splits

    config = resolve(apply_overrides({"data": {"name": data}}, [f"data.{item}" for item in options]))
    splits = read_splits(config.data, None)
    if splits.tokenizer is None:
        raise ConfigError(f"The data set {data!r} brings no tokenizer to count its tokens with; give --tokens N.")
    from kdlab.data.lm import encode_lm

    lm = options_of(config.data)
    tokens = encode_lm(splits.train, splits.tokenizer, max_length=lm.max_length or DEFAULT_LENGTH,
                       packing=lm.packing, prompt_length=lm.prompt_length)  # fmt: skip
    return tokens.targets, len(splits.tokenizer)


def cmd_cache(args: argparse.Namespace) -> int:
    from kdlab.cache.lm import DTYPES, bytes_per_token

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be ≥ 1 (log-probabilities kept per token); got {args.top_k}.")
    if args.dtype not in DTYPES:
        raise ConfigError(f"--dtype={args.dtype!r} is not one of {', '.join(DTYPES)}.")
    per = bytes_per_token(args.top_k, args.dtype)
    print(f"top-{args.top_k} {args.dtype}: {per} bytes a trained token ({args.top_k} ids × 4 + {args.top_k} values "
          f"× {DTYPES[args.dtype]} + a float32 tail)")  # fmt: skip
    tokens, vocab = args.tokens, args.vocab
    if args.data is not None:
        tokens, counted_vocab = trained_tokens(args.data, args.data_option)
        vocab = vocab or counted_vocab
    if tokens is not None:
        where = f" ({args.data}, training split)" if args.data else ""
        print(f"{tokens:,} trained tokens{where}: {_size(per * tokens)}")
        if vocab:
            full = 4 * vocab
            print(f"full float32 logits of a {vocab:,}-token vocabulary: {full:,} bytes a token, "
                  f"{_size(full * tokens)} ({full / per:.1f}× the top-{args.top_k} cache)")  # fmt: skip
    return 0
