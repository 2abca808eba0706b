"""`kdlab bench lm` at tiny sizes: every kdlab and floor mode takes timed steps, kdlab's phase split adds up to its
step, kdlab's on-policy step trains on what the student sampled, TRL's rows run when TRL is there and say how to get
it when it is not, one mode runs in its own process through the command line, and the table renders.

Tiny GPT-2s (teacher 2 × 32, student 1 × 32, a ~300-token byte-level BPE), batches of 4 × (12 + 4) tokens, 1 warm-up
and 1 timed step."""

import json
import math
import statistics

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from kdlab.bench import lm_bench, lm_modes, lm_trl  # noqa: E402
from kdlab.bench.lm_modes import ModeSettings, kdlab_engine, run_mode  # noqa: E402
from kdlab.bench.lm_pair import LM_MODES, PHASES, TRL_MISSING, LMPair, LMWorkload, gpt2  # noqa: E402
from kdlab.cli import main  # noqa: E402

PROMPT, COMPLETION, BATCH = 12, 4, 4
CPU = torch.device("cpu")
ONE_STEP = ModeSettings(CPU, BATCH, warmup=1, steps=1)
TINY = LMPair("tiny-gpt2-2x32-1x32", 2, 1, 32, 2, 300, BATCH, PROMPT, COMPLETION)
KDLAB_AND_FLOOR = ("kdlab_supervised", "kdlab_on_policy", "floor_supervised", "floor_on_policy")


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
    loop = kdlab_engine(work, True, ONE_STEP)
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
    assert main(["bench", "lm", "--rounds", "0"]) == 2
    assert "--rounds must be positive" in capsys.readouterr().err
    assert main(["bench", "--list"]) == 0
    assert "stdlib-gpt2-4x128-2x128 (lm)" in capsys.readouterr().out
    assert lm_modes.TRL_MISSING == "trl not installed: pip install 'kdlab[bench]'"
