"""`kdlab bench lm` at tiny sizes: every kdlab and floor mode takes timed steps, kdlab's phase split adds up to its
step, kdlab's on-policy step trains on what the student sampled, the cached mode reads its top-k cache and never runs
the teacher, the chunked mode's loss is the supervised mode's, TRL's rows run when TRL is there and say how to get
it when it is not, one mode runs in its own process through the command line (the cached mode: after its cache is
built in a process of its own), the random-id 32k pair's workload, and the table renders.

Tiny GPT-2s (teacher 2 × 32, student 1 × 32, a ~300-token byte-level BPE), batches of 4 × (12 + 4) tokens, 1 warm-up
and 1 timed step."""

import json
import math
import statistics
from dataclasses import replace
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from kdlab.bench import lm_bench, lm_modes, lm_trl  # noqa: E402
from kdlab.bench.lm_modes import ModeSettings, kdlab_engine, run_mode  # noqa: E402
from kdlab.bench.lm_pair import (  # noqa: E402
    LM_MODES,
    MEMORY_MODES,
    PHASES,
    TRL_MISSING,
    LMPair,
    LMWorkload,
    find_lm_pair,
    gpt2,
    load_lm_workload,
)
from kdlab.cache.lm import bytes_per_token  # noqa: E402
from kdlab.cli import main  # noqa: E402
from kdlab.core.errors import ConfigError  # noqa: E402

PROMPT, COMPLETION, BATCH = 12, 4, 4
CPU = torch.device("cpu")
ONE_STEP = ModeSettings(CPU, BATCH, warmup=1, steps=1)
TINY = LMPair("tiny-gpt2-2x32-1x32", 2, 1, 32, 2, 300, BATCH, PROMPT, COMPLETION)
KDLAB_AND_FLOOR = ("kdlab_supervised", "kdlab_on_policy", "floor_supervised", "floor_on_policy")
TOP_K, CHUNK = 8, 5  # 16 trained rows a batch: 4 chunks, the last of 1 row


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the steps are tiny and the machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def work() -> LMWorkload:
    from kdlab.data.lm import byte_level_bpe

    texts = [f"def f{n}(a, b):\n    return a * {n} + b  # the quick brown fox\n" for n in range(60)]
    tokenizer = byte_level_bpe(texts, 300, name="bench-lm-test")
    vocab = len(tokenizer)
    ids = torch.randint(1, vocab, (4 * BATCH, PROMPT + COMPLETION), generator=torch.Generator().manual_seed(0))
    teacher = gpt2(vocab, 2, 32, 2, PROMPT + COMPLETION, seed=0).eval()
    return LMWorkload(ids, PROMPT, tokenizer, teacher, gpt2(vocab, 1, 32, 2, PROMPT + COMPLETION, seed=1))


@pytest.mark.parametrize("mode", KDLAB_AND_FLOOR)
def test_kdlab_and_floor_modes_time_their_steps_and_kdlab_splits_them(work, mode):
    figures = run_mode(work, mode, ONE_STEP)
    assert len(figures["seconds"]) == 1 and figures["seconds"][0] > 0
    if mode.startswith("floor_"):
        assert set(figures) == {"seconds"}
        return
    split = figures["split_ms"]
    assert set(split) == {*PHASES, "other", "step"}
    parts = [split[name] for name in (*PHASES, "other")]
    assert math.isclose(sum(parts), split["step"], rel_tol=1e-9) and split["step"] > 0
    assert all(split[name] > 0 for name in ("student_forward", "teacher_forward", "loss", "student_backward"))
    assert split["optimizer"] > 0 and split["other"] >= 0
    assert (split["generate"] > split["student_forward"]) == (mode == "kdlab_on_policy")  # 4 forwards vs 1
    checks = figures["checks"]
    assert checks["trained_tokens_per_row"] == [COMPLETION] and math.isfinite(checks["loss"])
    assert (checks["completion_replaced"] > 0.5) == (mode == "kdlab_on_policy")


def test_kdlab_on_policy_trains_the_student_on_its_own_samples(work):
    loop, _ = kdlab_engine(work, "kdlab_on_policy", ONE_STEP)
    student, seen = loop.engine.student, []

    def record(module, args, kwargs):
        seen.append((module.training, kwargs["input_ids"].clone(), kwargs.get("logits_to_keep")))

    handle = student.register_forward_pre_hook(record, with_kwargs=True)
    batch = next(iter(loop.epoch(0)))
    loop.step(batch)
    handle.remove()
    generation, training = [s for s in seen if not s[0]], [s for s in seen if s[0]]
    assert [ids.shape for _, ids, _ in generation] == [(BATCH, PROMPT)] + [(BATCH, 1)] * (COMPLETION - 1)
    [(_, ids, keep)] = training
    data = batch.x["input_ids"]
    assert ids.shape == (BATCH, PROMPT + COMPLETION) and torch.equal(ids[:, :PROMPT], data[:, :PROMPT])
    assert (ids[:, PROMPT:] != data[:, PROMPT:]).float().mean() > 0.5  # the student's tokens, not the data's
    sampled = torch.cat([g[1] for g in generation[1:]], dim=1)  # tokens fed back while sampling: the first 3
    assert torch.equal(ids[:, PROMPT : PROMPT + COMPLETION - 1], sampled)
    assert keep == COMPLETION + 1  # the trimmed logits: the last prompt position and the completion


@pytest.mark.parametrize("mode", ["kdlab_cached", "kdlab_chunked"])
def test_cached_and_chunked_modes_time_their_steps_and_split_them(work, mode, tmp_path):
    settings = replace(ONE_STEP, top_k=TOP_K, chunk_size=CHUNK, cache_dir=tmp_path)
    figures = run_mode(work, mode, settings)
    assert len(figures["seconds"]) == 1 and figures["seconds"][0] > 0
    split = figures["split_ms"]
    assert math.isclose(sum(split[name] for name in (*PHASES, "other")), split["step"], rel_tol=1e-9)
    assert all(split[name] > 0 for name in ("student_forward", "loss", "student_backward", "optimizer"))
    checks, teacher = figures["checks"], figures["teacher"]
    assert checks["trained_tokens_per_row"] == [COMPLETION] and math.isfinite(checks["loss"])
    if mode == "kdlab_chunked":
        assert teacher == {"kind": "online"} and split["teacher_forward"] > 0
        return
    # read from the cache: the teacher's phase only gathers the batch's rows (a teacher forward at this size takes
    # about as long as the student's)
    assert split["teacher_forward"] < split["student_forward"] / 2
    tokens = len(work.input_ids) * COMPLETION
    assert teacher["kind"] == "cache" and teacher["built"] and teacher["top_k"] == TOP_K
    assert teacher["tokens"] == tokens and teacher["bytes"] == tokens * bytes_per_token(TOP_K) == tokens * 52
    assert teacher["bytes_per_token"] == 52 and teacher["seconds"] > 0
    folder = Path(teacher["folder"])
    assert folder.is_dir() and folder.parent == tmp_path and any(folder.iterdir())


def test_the_cached_mode_reads_the_cache_and_never_runs_the_teacher(work, tmp_path):
    settings = replace(ONE_STEP, top_k=TOP_K, cache_dir=tmp_path)
    lm_modes.build_cache(work, settings)  # what bench_lm does before the mode's processes
    loop, described = kdlab_engine(work, "kdlab_cached", settings)
    assert not described["built"]  # found, not rebuilt: the key (weights, sequences, k, τ, dtype) is the same
    calls = []
    teacher = loop.engine.method.models[1].members[0]
    handle = teacher.register_forward_hook(lambda *_: calls.append(1))
    batch = next(iter(loop.epoch(0)))
    outputs = loop.engine.teacher(batch)
    loop.step(batch)
    handle.remove()
    assert calls == [] and outputs.logits.shape == (BATCH * COMPLETION, TOP_K)
    assert set(outputs.structure) == {"topk_ids", "tail"}


def test_the_chunked_loss_is_the_supervised_loss_on_the_same_first_batch(work):
    settings = replace(ONE_STEP, chunk_size=CHUNK)
    first = {mode: run_mode(work, mode, settings)["checks"]["first_loss"] for mode in ("kdlab_supervised",
                                                                                       "kdlab_chunked")}  # fmt: skip
    assert first["kdlab_chunked"] == pytest.approx(first["kdlab_supervised"], abs=1e-5, rel=1e-5)
    loops = {mode: kdlab_engine(work, mode, settings)[0] for mode in ("kdlab_supervised", "kdlab_chunked")}
    batches = {mode: next(iter(loop.epoch(0))) for mode, loop in loops.items()}
    chunked = batches["kdlab_chunked"]
    assert chunked.x["output_hidden_states"] and chunked.x["logits_to_keep"].numel() == 0  # no logits from the models
    assert torch.equal(chunked.index, batches["kdlab_supervised"].index)
    losses = {mode: float(loops[mode].engine.step(batches[mode])[0]) for mode in loops}
    assert losses["kdlab_chunked"] == pytest.approx(losses["kdlab_supervised"], abs=1e-5, rel=1e-5)
    grads = [{n: q.grad for n, q in loop.engine.student.named_parameters()} for loop in loops.values()]  # the step's
    assert all(torch.allclose(grads[0][n], grads[1][n], rtol=1e-4, atol=1e-7) for n in grads[0])


def test_the_32k_pair_runs_its_memory_modes_on_random_ids(work, tmp_path):
    pair = find_lm_pair("lm-32k")
    assert pair is not None and pair.vocab_size == 32_000 and pair.modes == MEMORY_MODES and pair.random_ids
    assert pair.prompt_length == 0 and pair.batch_size * pair.length == 4096 and (pair.warmup, pair.steps) == (1, 3)
    tiny = replace(pair, name="tiny-random", teacher_layers=2, student_layers=1, width=32, heads=2, vocab_size=300,
                   batch_size=BATCH, completion_length=PROMPT + COMPLETION)  # fmt: skip
    loaded = load_lm_workload(tiny, 6, seed=3)
    assert loaded.tokenizer is None and loaded.vocab_size == 300 and loaded.input_ids.shape == (6, PROMPT + COMPLETION)
    assert int(loaded.input_ids.min()) >= 1 and int(loaded.input_ids.max()) < 300
    loaded.save(tmp_path / "work")
    again = LMWorkload.load(tmp_path / "work")
    assert again.tokenizer is None and torch.equal(again.input_ids, loaded.input_ids) and again.prompt_length == 0
    settings = lm_bench.LMSettings(CPU, BATCH, warmup=1, steps=1, isolate=False, top_k=TOP_K, chunk_size=CHUNK)
    record = lm_bench.bench_lm(tiny, settings, work=work)
    assert list(record["modes"]) == ["kdlab_supervised", "kdlab_cached", "kdlab_chunked", "floor_supervised"]
    assert set(record["ratios"]) == {f"{m}_per_floor" for m in ("kdlab_supervised", "kdlab_cached", "kdlab_chunked")}
    cache = record["cache"]
    assert cache["built"] and cache["bytes_per_token"] == 52 and cache["memory"]["bytes"] > 0
    assert not record["modes"]["kdlab_cached"]["teacher"]["built"]  # the mode read the cache built before it
    assert (record["top_k"], record["chunk_size"], record["warmup"], record["steps"]) == (TOP_K, CHUNK, 1, 1)
    text = lm_bench.lm_text(lm_bench.record(settings, [record]))
    assert "top-8 log-probabilities (float16) of 64 trained tokens" in text and "52 bytes a token" in text
    assert "5 trained positions a chunk" in text and "TRL defaults" not in text
    with pytest.raises(ConfigError, match="has none of the modes"):
        lm_bench.bench_lm(tiny, replace(settings, modes=("kdlab_on_policy",)), work=work)


def test_trl_rows_say_how_to_install_trl_when_it_is_missing(work, monkeypatch, capsys):
    def missing():
        raise ImportError("No module named 'trl'")

    monkeypatch.setattr(lm_trl, "import_trl", missing)
    trl_modes = tuple(m for m in LM_MODES if m.startswith("trl_"))
    assert all(run_mode(work, mode, ONE_STEP) == {"skipped": TRL_MISSING} for mode in trl_modes)
    monkeypatch.setattr(lm_bench, "trl_installed", lambda: False)  # the parent does not start their processes
    settings = lm_bench.LMSettings(CPU, BATCH, warmup=1, steps=1, modes=trl_modes)
    pair = lm_bench.bench_lm(TINY, settings, work=work)
    assert all(pair["modes"][m]["skipped"] == TRL_MISSING for m in trl_modes) and pair["ratios"] == {}
    text = lm_bench.lm_text(lm_bench.record(settings, [pair]))
    assert text.count(TRL_MISSING) == 3 and "Traceback" not in text


@pytest.mark.parametrize("mode", ["trl_supervised", "trl_on_policy", "trl_on_policy_defaults"])
def test_trl_modes_time_their_steps_when_trl_is_installed(work, mode):
    pytest.importorskip("trl")
    figures = run_mode(work, mode, ONE_STEP)
    assert "skipped" not in figures and len(figures["seconds"]) == 1 and figures["seconds"][0] > 0


def test_the_table_renders_every_mode_with_its_ratio_to_the_floor(work):
    settings = lm_bench.LMSettings(CPU, BATCH, warmup=1, steps=1, modes=KDLAB_AND_FLOOR, isolate=False)
    pair = lm_bench.bench_lm(TINY, settings, work=work)
    assert pair["tokens_per_step"] == BATCH * (PROMPT + COMPLETION)
    assert set(pair["ratios"]) == {"kdlab_supervised_per_floor", "kdlab_on_policy_per_floor"}
    for mode in KDLAB_AND_FLOOR:
        figures = pair["modes"][mode]
        assert figures["tokens_per_s"] == pytest.approx(pair["tokens_per_step"] / (figures["ms_per_step"] / 1000))
        assert figures["memory"]["kind"] == "peak_rss" and figures["memory"]["bytes"] > 0
    text = lm_bench.lm_text(lm_bench.record(settings, [pair]))
    assert "tokens/s" in text and "every mode in this process" in text
    assert "kdlab ÷ floor, supervised" in text and "kdlab ÷ floor, on-policy" in text and "target ≤ 1.15×" in text
    assert all(pair["modes"][m]["label"] in text for m in KDLAB_AND_FLOOR)
    assert "trains 4 completion tokens a row, 100 % of them not the data's" in text
    json.dumps(lm_bench.record(settings, [pair]))  # the record is JSON as it is


def test_rounds_pool_the_steps_of_every_round(work):
    settings = lm_bench.LMSettings(CPU, BATCH, warmup=1, steps=2, modes=("kdlab_supervised",), isolate=False, rounds=2)
    pair = lm_bench.bench_lm(TINY, settings, work=work)
    figures = pair["modes"]["kdlab_supervised"]
    assert len(figures["seconds"]) == 4 and len(figures["round_ms"]) == 2
    assert figures["ms_per_step"] == pytest.approx(1000 * statistics.median(figures["seconds"]))  # all 4 steps
    split = figures["split_ms"]
    assert math.isclose(sum(split[k] for k in (*PHASES, "other")), split["step"], rel_tol=1e-9)
    text = lm_bench.lm_text(lm_bench.record(settings, [pair]))
    assert "in each of 2 rounds" in text and "the rounds' medians, lowest–highest" in text


def test_cli_runs_a_mode_in_its_own_process_and_writes_json(work, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(lm_bench, "load_lm_workload", lambda pair, sequences, seed: work)
    out = tmp_path / "lm.json"
    argv = ["bench", "lm", "--device", "cpu", "--batch", str(BATCH), "--steps", "1", "--warmup", "1"]
    assert main([*argv, "--modes", "floor_supervised", "--out", str(out)]) == 0
    assert "floor, supervised" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["format"] == lm_bench.FORMAT and result["settings"]["isolated"]
    figures = result["pairs"][0]["modes"]["floor_supervised"]
    memory = figures["memory"]
    assert figures["ms_per_step"] > 0 and memory["kind"] == "peak_rss"
    assert memory["bytes"] >= memory["baseline_bytes"] > 0  # the child's own peak, not this process's
    assert figures["threads"] >= 1


def test_cli_builds_the_cache_in_its_own_process_before_the_cached_mode(work, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(lm_bench, "load_lm_workload", lambda pair, sequences, seed: work)
    out = tmp_path / "lm.json"
    argv = ["bench", "lm", "--device", "cpu", "--batch", str(BATCH), "--steps", "1", "--warmup", "1", "--top-k", "4"]
    assert main([*argv, "--modes", "kdlab_cached", "--out", str(out)]) == 0
    assert "28 bytes a token" in capsys.readouterr().out
    pair = json.loads(out.read_text())["pairs"][0]
    cache, figures = pair["cache"], pair["modes"]["kdlab_cached"]
    assert cache["built"] and cache["top_k"] == 4 and cache["bytes_per_token"] == bytes_per_token(4) == 28
    assert cache["memory"]["bytes"] >= cache["memory"]["baseline_bytes"] > 0  # the build process's own peak
    assert not figures["teacher"]["built"] and figures["teacher"]["folder"] == cache["folder"]
    assert figures["ms_per_step"] > 0 and figures["split_ms"]["teacher_forward"] >= 0


def test_cli_refuses_what_the_lm_pair_cannot_do(capsys):
    assert main(["bench", "lm", "fmnist-resnet20-cnn8"]) == 2
    assert "benched on its own" in capsys.readouterr().err
    assert main(["bench", "lm", "--epochs", "1"]) == 2
    assert "--epochs does not apply" in capsys.readouterr().err
    assert main(["bench", "lm", "--modes", "online"]) == 2
    err = capsys.readouterr().err
    assert "Unknown LM bench mode(s) ['online']" in err and ", ".join(LM_MODES) in err and "Traceback" not in err
    assert main(["bench", "fmnist-resnet20-cnn8", "--rounds", "2"]) == 2
    assert "--rounds applies to the language-model pair" in capsys.readouterr().err
    assert main(["bench", "fmnist-resnet20-cnn8", "--top-k", "8"]) == 2
    assert "--top-k applies to the language-model pair" in capsys.readouterr().err
    assert main(["bench", "lm", "--chunk-size", "0"]) == 2
    assert "--chunk-size must be positive" in capsys.readouterr().err
    assert main(["bench", "lm", "--rounds", "0"]) == 2
    assert "--rounds must be positive" in capsys.readouterr().err
    assert main(["bench", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "stdlib-gpt2-4x128-2x128 (lm)" in listed and "random-gpt2-4x256-2x256-32k (lm-32k)" in listed
    assert lm_modes.TRL_MISSING == "trl not installed: pip install 'kdlab[bench]'"
