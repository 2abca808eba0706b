"""`kdlab bench`: the reference loop computes kdlab's objective, every mode gives sane figures, the cached mode
never runs the teacher, and the command line fails cleanly."""

import json
import math
import os

import pytest
import torch

from kdlab.bench import IMAGE_MODES, MODES, PAIRS, Settings, bench_pair, get_pair, write_result
from kdlab.bench.measure import PARTS
from kdlab.bench.modes import kdlab_loop, teacher_cache
from kdlab.bench.pairs import RANDOM, Pair, load_workload
from kdlab.bench.reference import PerSampleImages, ReferenceLoop, reference_kd_loss
from kdlab.cli import main
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.data.base import DataInfo
from kdlab.data.loader import TensorLoader
from kdlab.models.factory import ModelSpec
from kdlab.training.engine import Recipe
from kdlab.training.teachers import Teacher

CPU = torch.device("cpu")
INFO = DataInfo("tiny", 5, 3, (8, 8), (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))


def tiny_pair(train_size: int = 48, ce_weight: float = 0.3) -> Pair:
    student, teacher = ModelSpec("cnn", {"width": 2}), ModelSpec("cnn", {"width": 4})
    return Pair("tiny", teacher, student, RANDOM, INFO, train_size, 8, temperature=3.0, ce_weight=ce_weight)


def engine_loop(work, mode, cache=None):
    recipe = Recipe(1, work.pair.optim, work.seed)
    teacher = Teacher(work.teacher)
    return kdlab_loop(work, mode, teacher=teacher, cache=cache, batch_size=8, device=CPU, recipe=recipe), teacher


def test_reference_loss_and_gradient_equal_kdlab_kd_on_the_same_batch():
    pair = tiny_pair()
    work = load_workload(pair)
    loop, teacher = engine_loop(work, "online")
    batch = next(iter(TensorLoader(work.x, work.y, 8).epoch(0)))
    student = loop.engine.student
    terms = loop.engine.method(ModelOutput(student(batch.x)), teacher(batch.x), batch)
    kdlab_loss = sum(terms.values())
    kdlab_loss.backward()

    reference = ReferenceLoop(
        work.student(),
        work.teacher,
        PerSampleImages(work.x, work.y, INFO.mean, INFO.std),
        batch_size=8,
        optim=pair.optim,
        temperature=pair.temperature,
        ce_weight=pair.ce_weight,
        device=CPU,
    )
    images = torch.stack([reference.loader.dataset[i][0] for i in range(8)])  # per-sample pixels, as collated
    labels = torch.tensor([reference.loader.dataset[i][1] for i in range(8)])
    logits = reference.student(images)
    with torch.no_grad():
        teacher_logits = reference.teacher(images)
    torch.testing.assert_close(logits, student(batch.x))  # same init, same pixels after normalisation
    loss = reference_kd_loss(logits, teacher_logits, labels, pair.temperature, pair.ce_weight)
    loss.backward()
    # KL = soft cross-entropy − teacher entropy: the values differ by that constant, the gradients not at all
    q = torch.softmax(teacher_logits / pair.temperature, dim=1)
    entropy = -(q * q.log()).sum(1).mean()
    torch.testing.assert_close(loss + (1 - pair.ce_weight) * pair.temperature**2 * entropy, kdlab_loss)
    kdlab_grads = dict(student.named_parameters())
    for name, param in reference.student.named_parameters():
        torch.testing.assert_close(param.grad, kdlab_grads[name].grad, rtol=1e-4, atol=1e-6)


def check_mode(figures, images_per_epoch=None):
    assert math.isfinite(figures["images_per_s"]) and figures["images_per_s"] > 0
    assert figures["ms_per_step"] > 0 and figures["epoch_s"] > 0 and math.isfinite(figures["train"]["loss"])
    split = figures["split_ms"]
    assert all(math.isfinite(split[k]) and split[k] >= 0 for k in PARTS if k != "other")
    assert split["other"] > -0.05 * split["step"]  # the phases lie inside the step
    assert sum(split[k] for k in PARTS) == pytest.approx(split["step"], rel=1e-6)
    if images_per_epoch is not None:
        assert figures["timed"]["images"] == images_per_epoch and figures["epoch_measured"]


def test_tiny_bench_runs_every_mode_and_ratios():
    pair = tiny_pair()
    record = bench_pair(pair, Settings(steps=3, warmup=1, epochs=0))
    assert list(record["modes"]) == list(IMAGE_MODES)  # every mode an image pair has (tinybert is for text)
    for mode in IMAGE_MODES:
        check_mode(record["modes"][mode])
        assert record["modes"][mode]["mfu"] is None  # CPU: no peak to compare with
        assert not record["modes"][mode]["epoch_measured"]
    assert record["images"] == 8 * (1 + 3)  # steps need only the images they see
    assert record["cache_build_s"] > 0
    assert set(record["ratios"]) == {
        "cached_epoch_per_student_epoch",
        "online_epoch_per_student_epoch",
        "cached_speedup_over_reference",
        "online_speedup_over_reference",
    }
    # FLOPs per image: the teacher's forward only where it runs
    online, cached = record["modes"]["online"]["flops_per_image"], record["modes"]["cached"]["flops_per_image"]
    assert online - cached == 2 * record["teacher"]["macs"] and cached == 6 * record["student"]["macs"]


def test_whole_epochs_are_timed_with_the_short_last_batch():
    pair = tiny_pair(train_size=20)  # batches of 8, 8 and 4
    record = bench_pair(pair, Settings(steps=2, warmup=1, epochs=2, modes=("cached", "reference")))
    for figures in record["modes"].values():
        check_mode(figures, images_per_epoch=40)
        assert figures["timed"]["steps"] == 6


def test_cached_mode_never_calls_the_teacher(tmp_path):
    work = load_workload(tiny_pair())
    cache = teacher_cache(Teacher(work.teacher), work, tmp_path / "c", batch_size=8, device=CPU, precision="auto")

    def refuse(x):
        raise AssertionError("the teacher ran")

    loop, teacher = engine_loop(work, "cached", cache)
    teacher.members[0].forward = refuse
    for batch in loop.epoch(0):
        loop.step(batch)
    assert math.isfinite(loop.summary()["loss"])
    online, teacher = engine_loop(work, "online")
    teacher.members[0].forward = refuse
    with pytest.raises(AssertionError, match="the teacher ran"):
        online.step(next(iter(online.epoch(0))))


def test_cli_unknown_pair_bad_option_and_list(capsys):
    assert main(["bench", "cifar-resnet56-resnet2"]) == 2
    err = capsys.readouterr().err
    assert "Unknown bench pair 'cifar-resnet56-resnet2'" in err and "Traceback" not in err
    assert all(name in err for name in PAIRS) and err.strip().count("\n") == 0
    assert main(["bench", "--warmup", "-1"]) == 2
    assert "--warmup must be 0 or more" in capsys.readouterr().err
    assert main(["bench", "--modes", "online", "fast"]) == 2
    assert f"valid modes: {', '.join(MODES)}" in capsys.readouterr().err
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PAIRS)


def test_cli_writes_loadable_json_atomically(capsys, tmp_path, monkeypatch):
    out = tmp_path / "bench.json"
    argv = ["bench", "cifar-resnet56-resnet20", "--device", "cpu", "--batch", "2", "--steps", "1", "--warmup", "0"]
    assert main([*argv, "--modes", "cached", "reference", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cifar-resnet56-resnet20" in printed and "kdlab with the teacher cached ÷ reference loop" in printed
    result = json.loads(out.read_text())
    assert result["format"] == "kdlab-bench" and result["machine"]["torch"] == torch.__version__
    assert result["machine"]["cores"] == os.cpu_count() and result["settings"]["kdlab_precision"] == "fp32"
    pair = result["pairs"][0]
    assert pair["teacher"]["macs"] == 125_753_600 and pair["student"]["macs"] == 40_818_944
    assert pair["modes"]["reference"]["projected_recipe_h"] > 0 and not pair["modes"]["cached"]["epoch_measured"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]  # no temporary file left behind

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)  # a write that fails before its rename leaves the old file whole
    with pytest.raises(OSError):
        write_result(out, {"other": 1})
    assert json.loads(out.read_text()) == result and sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]


def test_pairs_and_settings():
    assert get_pair("fmnist-resnet20-cnn8").batch_size == 256 and get_pair("fmnist-resnet20-cnn8").timed_epochs == 1
    assert get_pair("cifar-resnet32x4-resnet8x4").recipe_epochs == 240
    with pytest.raises(ConfigError, match="valid modes"):
        Settings(modes=("fast",)).check()
