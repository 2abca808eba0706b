"""The teacher-output cache: exact against the teacher online, refused when stale, top-k with a tail bucket."""

import math

import numpy as np
import pytest
import torch

from kdlab.cache.build import cache_folder, find_or_build
from kdlab.cache.key import cache_key, differences, views_description
from kdlab.cache.select import from_cache, online
from kdlab.cache.settings import CacheConfig
from kdlab.cache.store import StaleCacheError, open_cache
from kdlab.cache.topk import compress_top_k, restore_top_k
from kdlab.core.errors import ConfigError
from kdlab.data import load_dataset
from kdlab.data.loader import TensorLoader
from kdlab.data.policies import Augment
from kdlab.data.views import ViewBank
from kdlab.methods import MethodContext, build_method
from kdlab.models import MODELS
from kdlab.tasks.image.sources import tensor_sources
from kdlab.tasks.image.teacher_source import teacher_source
from kdlab.training.engine import Engine, Recipe
from kdlab.training.optim import OptimConfig
from kdlab.training.teachers import Teacher

DATA = load_dataset("synthetic", num_classes=4, image_size=8, train_size=96, test_size=16)
AUGMENT = Augment(crop=2, flip=True, rotation=10.0)
CPU = torch.device("cpu")


def make_teacher(seed: int = 3) -> Teacher:
    torch.manual_seed(seed)
    return Teacher(MODELS.get("resnet8")(num_classes=4, in_channels=1))


def make_sources(augment: Augment = AUGMENT, views: int = 3):
    return tensor_sources(
        DATA.info, (DATA.train_x, DATA.train_y), None, None, batch_size=16, eval_batch_size=40,
        augment=augment, device=CPU, views=views,
    )  # fmt: skip


def source_for(teacher, sources, tmp_path, method, **settings):
    return teacher_source(
        method, teacher, "resnet8", sources, CacheConfig(dir=str(tmp_path), **settings),
        enabled=True, precision="auto", device=CPU, log=lambda m: None,
    )  # fmt: skip


def kd_method(teacher, name="kd", params=None):
    torch.manual_seed(0)
    student = MODELS.get("cnn")(num_classes=4, in_channels=1, width=4)
    context = MethodContext(student, teacher, 4, input_shape=(1, 8, 8), num_train=len(DATA.train_x), epochs=2)
    return student, build_method(name, params or {}, context)


# --- top-k compression -------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 10, 100])
def test_top_k_round_trips_the_top_k_exactly_and_the_tail_mass(k):
    torch.manual_seed(0)
    logits = torch.randn(6, 5, 100) * 4
    restored = restore_top_k(*compress_top_k(logits, k), num_classes=100)
    p, q = logits.softmax(-1), restored.softmax(-1)
    top = p.topk(k, dim=-1)
    assert torch.equal(restored.gather(-1, top.indices), logits.gather(-1, top.indices))  # the top-k logits exact
    assert torch.allclose(q.gather(-1, top.indices), top.values, atol=1e-6)  # ... and their probabilities
    tail_p, tail_q = 1 - top.values.sum(-1), 1 - q.gather(-1, top.indices).sum(-1)
    assert torch.allclose(tail_q, tail_p, atol=1e-6)  # the tail's total mass
    if k < 100:  # spread evenly over the tail classes, all below the k-th largest
        rest = q.scatter(-1, top.indices, float("nan"))
        assert torch.allclose(rest.nan_to_num(0).sum(-1), tail_p, atol=1e-6)
        assert (restored.scatter(-1, top.indices, -math.inf).amax(-1) <= top.values.log()[..., -1] + 50).all()
    else:
        assert torch.equal(restored, logits)


def test_top_k_outside_the_classes_is_refused():
    with pytest.raises(ValueError, match=r"1\.\.10"):
        compress_top_k(torch.randn(2, 10), 11)


# --- keys, staleness ---------------------------------------------------------------------------------------


def key_for(teacher, images=DATA.train_x, views=None):
    views = views or views_description(AUGMENT, 3, 0)
    return cache_key(teacher, images, views, top_k=None, layers=(), precision="cpu:None")


def test_key_changes_with_weights_data_and_views():
    teacher = make_teacher()
    key = key_for(teacher)
    assert differences(key, key_for(make_teacher())) == []
    assert differences(key, key_for(make_teacher(seed=4))) == ["teacher_weights"]
    with torch.no_grad():
        teacher.members[0].fc.bias[0] += 1e-3  # a tiny change is a change
    assert differences(key, key_for(teacher)) == ["teacher_weights"]
    assert differences(key, key_for(make_teacher(), DATA.train_x.flip(0))) == ["data"]
    assert differences(key, key_for(make_teacher(), views=views_description(AUGMENT, 4, 0))) == ["views"]
    assert differences(key, key_for(make_teacher(), views=views_description(AUGMENT, 3, 1))) == ["views"]


def test_a_stale_cache_is_refused_and_rebuilt(tmp_path):
    sources = make_sources()
    old, new = make_teacher(seed=3), make_teacher(seed=4)
    folder = tmp_path / "cache"
    find_or_build(old, sources.teacher_loader(), folder, key_for(old))
    with pytest.raises(StaleCacheError, match="teacher_weights"):
        open_cache(folder, key_for(new))
    messages = []
    cache, built = find_or_build(new, sources.teacher_loader(), folder, key_for(new), log=messages.append)
    assert built and "Rebuilding" in messages[0]
    batch = next(sources.make_train(0).epoch(0))
    assert torch.allclose(cache(batch.index, batch.extras.view).logits, new(batch.x).logits, atol=1e-6)


def test_a_valid_cache_is_reused_without_the_teacher(tmp_path):
    sources = make_sources()
    teacher = make_teacher()
    find_or_build(teacher, sources.teacher_loader(), tmp_path / "c", key_for(teacher))

    def refuse(x):
        raise AssertionError("the teacher ran although its outputs were cached")

    _, built = find_or_build(refuse, sources.teacher_loader(), tmp_path / "c", key_for(teacher))
    assert not built


def test_a_damaged_cache_is_rebuilt_and_an_interrupted_build_leaves_none(tmp_path):
    sources, teacher = make_sources(), make_teacher()
    folder = tmp_path / "c"
    find_or_build(teacher, sources.teacher_loader(), folder, key_for(teacher))
    (folder / "logits.npy").write_bytes(b"\x93NUMPY truncated")
    _, built = find_or_build(teacher, sources.teacher_loader(), folder, key_for(teacher))
    assert built
    calls = []

    def dies(x):
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return teacher(x)

    other = tmp_path / "d"
    with pytest.raises(KeyboardInterrupt):
        find_or_build(dies, sources.teacher_loader(), other, key_for(teacher))
    assert not other.exists() and not list(tmp_path.glob("d.tmp-*"))


def test_an_array_damaged_in_place_or_a_truncated_meta_is_detected_and_rebuilt(tmp_path):
    sources, teacher = make_sources(), make_teacher()
    folder = tmp_path / "c"
    good, _ = find_or_build(teacher, sources.teacher_loader(), folder, key_for(teacher))
    expected = good.arrays["logits"].clone()
    path = folder / "logits.npy"
    size = path.stat().st_size
    with open(path, "r+b") as f:  # half of the values overwritten with zeros, the file's size unchanged
        f.seek(size // 2)
        f.write(bytes(size - size // 2))
    assert path.stat().st_size == size
    with pytest.raises(StaleCacheError, match="does not match its checksum"):
        open_cache(folder, key_for(teacher))
    rebuilt, built = find_or_build(teacher, sources.teacher_loader(), folder, key_for(teacher))
    assert built and torch.equal(rebuilt.arrays["logits"], expected)
    meta = folder / "meta.json"
    meta.write_text(meta.read_text()[:40])
    with pytest.raises(StaleCacheError, match=r"meta\.json"):
        open_cache(folder, key_for(teacher))
    _, built = find_or_build(teacher, sources.teacher_loader(), folder, key_for(teacher))
    assert built and open_cache(folder, key_for(teacher)).views == good.views


def test_the_folder_names_the_teacher_but_not_its_weights(tmp_path):
    a, b = key_for(make_teacher(3)), key_for(make_teacher(4))
    assert cache_folder(tmp_path, "run/teacher a", a) == cache_folder(tmp_path, "run/teacher a", b)
    assert cache_folder(tmp_path, "run/teacher a", a).name.startswith("run_teacher_a-")
    assert cache_folder(tmp_path, "x", a) != cache_folder(tmp_path, "x", key_for(make_teacher(3), DATA.train_x[:50]))


# --- cached == online --------------------------------------------------------------------------------------


@pytest.mark.parametrize("augment, views", [(Augment(), 0), (AUGMENT, 3)])
def test_cached_and_online_distillation_give_the_same_loss_on_the_same_views(tmp_path, augment, views):
    teacher = make_teacher()
    sources = make_sources(augment, views)
    _, method = kd_method(teacher, params={"temperature": 4.0, "ce_weight": 0.3})
    cached, described = source_for(teacher, sources, tmp_path, method)
    assert described["kind"] == "cache" and described["views"] == max(views, 1)
    live = online(teacher)
    from kdlab.core.outputs import ModelOutput

    for epoch in range(2):
        for batch in sources.make_train(0).epoch(epoch):
            student = ModelOutput(logits=torch.randn(len(batch), 4))
            a, b = method(student, cached(batch), batch), method(student, live(batch), batch)
            assert set(a) == set(b)
            for name in a:
                assert torch.allclose(a[name], b[name], atol=1e-6), name


def test_a_cached_run_trains_the_same_weights_as_an_online_run(tmp_path):
    teacher, sources = make_teacher(), make_sources(AUGMENT, 2)
    weights = []
    for mode in ("cache", "online"):
        student, method = kd_method(teacher, params={"temperature": 4.0, "ce_weight": 0.3})
        source = source_for(teacher, sources, tmp_path, method)[0] if mode == "cache" else online(teacher)
        engine = Engine(
            student=student, method=method, train=sources.make_train(0), teacher=source,
            recipe=Recipe(2, OptimConfig(lr=0.1), 0), state_path=tmp_path / mode / "state.pt", progress=False,
        )  # fmt: skip
        engine.fit()
        weights.append(torch.cat([p.detach().flatten() for p in student.parameters()]))
    assert (weights[0] - weights[1]).abs().max() < 1e-5


def test_tapped_features_are_cached_per_view(tmp_path):
    teacher, sources = make_teacher(), make_sources(AUGMENT, 2)
    _, method = kd_method(teacher, "fitnets", {"student_layers": ["stage2"], "teacher_layers": ["layer1"]})
    cached, described = source_for(teacher, sources, tmp_path, method)
    assert described["kind"] == "cache"
    teacher.tap(("layer1",))
    batch = next(sources.make_train(1).epoch(1))
    assert torch.allclose(cached(batch).features["layer1"], teacher(batch.x).features["layer1"], atol=1e-5)


def test_top_k_cache_serves_restored_logits(tmp_path):
    teacher, sources = make_teacher(), make_sources(Augment(), 0)
    _, method = kd_method(teacher)
    cached, described = source_for(teacher, sources, tmp_path, method, top_k=2)
    assert described["top_k"] == 2
    batch = next(sources.make_train(0).epoch(0))
    expected = restore_top_k(*compress_top_k(teacher(batch.x).logits, 2), num_classes=4)
    assert torch.allclose(cached(batch).logits, expected, atol=1e-6)
    with pytest.raises(ConfigError, match="top_k=9 but the data have 4 classes"):
        source_for(teacher, sources, tmp_path, method, top_k=9)


def test_augmentation_without_stored_views_runs_the_teacher_online(tmp_path):
    teacher = make_teacher()
    _, method = kd_method(teacher)
    _, described = source_for(teacher, make_sources(AUGMENT, 0), tmp_path, method)
    assert described["kind"] == "online" and "cache.views" in described["reason"]
    assert not list(tmp_path.iterdir())


# --- stored views ------------------------------------------------------------------------------------------


def test_training_replays_the_stored_views():
    bank = ViewBank.draw(DATA.train_x, AUGMENT, 3, seed=0)
    replay = TensorLoader(DATA.train_x, DATA.train_y, 16, shuffle=True, augment=AUGMENT, seed=5, views=bank)
    each = TensorLoader(DATA.train_x, DATA.train_y, 40, augment=AUGMENT, views=bank)
    stored = {k: torch.cat([b.x for b in each.view_batches(k)]) for k in range(3)}
    assert not torch.equal(stored[0], stored[1])
    seen = set()
    for epoch in range(3):
        for batch in replay.epoch(epoch):
            for i, v, image in zip(batch.index.tolist(), batch.extras.view.tolist(), batch.x, strict=True):
                assert torch.equal(image, stored[v][i])
                seen.add(v)
    assert seen == {0, 1, 2}


def test_views_refuse_batch_level_augmentation():
    with pytest.raises(ValueError, match=r"mixup=1\.0"):
        ViewBank.draw(DATA.train_x, Augment(crop=2, mixup=1.0), 2, seed=0)
    with pytest.raises(ConfigError, match=r"cache\.views=2"):
        make_sources(Augment(crop=2, cutmix=1.0), 2)


def test_cache_arrays_are_memory_maps(tmp_path):
    teacher, sources = make_teacher(), make_sources()
    cache, _ = find_or_build(teacher, sources.teacher_loader(), tmp_path / "c", key_for(teacher))
    array = np.load(tmp_path / "c" / "logits.npy", mmap_mode="r")
    assert array.shape == (len(DATA.train_x), 3, 4)
    assert torch.equal(cache.arrays["logits"], torch.from_numpy(np.array(array)))
    _ = from_cache(cache)


# --- runs --------------------------------------------------------------------------------------------------


def test_runs_with_the_same_teacher_and_views_share_one_cache(tmp_path, synthetic_teacher, capsys):
    import json

    from kdlab.cli import main

    common = [
        f"teacher={synthetic_teacher}", "data.name=synthetic", "data.train_size=64", "data.test_size=16",
        "data.batch_size=16", "data.augment=baseline", "student=cnn", "student.width=4", "device=cpu", "epochs=1",
        "cache.views=2", f"cache.dir={tmp_path / 'cache'}", f"runs_dir={tmp_path}", "independent=false", "--quiet",
    ]  # fmt: skip
    described = []
    for name, seed in (("a", 0), ("b", 1)):
        assert main(["distill", *common, f"name={name}", f"seed={seed}"]) == 0
        described.append(json.loads((tmp_path / name / "summary.json").read_text())["teacher_source"])
    assert [d["kind"] for d in described] == ["cache", "cache"]
    assert [d["built"] for d in described] == [True, False]
    assert described[0]["folder"] == described[1]["folder"] and described[0]["views"] == 2
    assert len(list((tmp_path / "cache").iterdir())) == 1
    capsys.readouterr()
    assert main(["distill", *common, "name=c", "cache.views=-1"]) == 2
    assert "cache.views" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host-device synchronisation exists only with a CUDA device")
def test_a_cached_kd_step_never_waits_for_the_device(tmp_path):
    device = torch.device("cuda")
    teacher = make_teacher().to(device)
    sources = tensor_sources(
        DATA.info, (DATA.train_x, DATA.train_y), None, None, batch_size=16, eval_batch_size=40,
        augment=AUGMENT, device=device, views=2,
    )  # fmt: skip
    student, method = kd_method(teacher)
    student, method = student.to(device), method.to(device)
    source, _ = teacher_source(
        method, teacher, "t", sources, CacheConfig(dir=str(tmp_path)), enabled=True, precision="auto",
        device=device, log=lambda m: None,
    )  # fmt: skip
    engine = Engine(
        student=student, method=method, train=sources.make_train(0), teacher=source,
        recipe=Recipe(1, OptimConfig(lr=0.1), 0), state_path=tmp_path / "state.pt", progress=False,
    )  # fmt: skip
    batches = list(sources.make_train(0).epoch(0))
    engine.step(batches[0])  # warm-up: lazy CUDA initialisation may synchronise
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in batches[1:]:
            engine.step(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_a_top_k_above_the_classes_is_refused_before_any_folder_is_made(tmp_path, synthetic_teacher, capsys):
    from kdlab.cli import main

    code = main(
        ["distill", f"teacher={synthetic_teacher}", "data=synthetic", "student.width=4", "independent=false",
         "cache.top_k=9", f"runs_dir={tmp_path / 'runs'}", "--quiet"]
    )  # fmt: skip
    assert code == 2 and "cache.top_k=9 but the data have 4 classes" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
