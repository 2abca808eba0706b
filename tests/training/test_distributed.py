"""Data-parallel training: a real 2-process CPU distillation under torchrun against the same run in one process,
the collectives and the engine in two spawned gloo processes, and the sharding and loss weights without any.

Why the exact comparison can hold: the loader gives each process the samples (and the per-sample augmentation) of
its piece of the one-process batch, losses are weighted so that DDP's averaged gradient is the one-process gradient
(also for the uneven last batch), and the student is an MLP — no BatchNorm, whose per-process batch statistics
would make a 2-process run a different (if equally valid) computation. What remains is float32 summation order: the
gradient is a weighted sum of two half-batch gradients instead of one sum over the batch, ~1e-7 relative per step.
"""

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from kdlab.cache.select import online as online_teacher
from kdlab.cli import main
from kdlab.core.errors import ConfigError, Interrupted
from kdlab.data import load_dataset
from kdlab.data.loader import TensorLoader
from kdlab.data.policies import Augment
from kdlab.methods import MethodContext, build_method
from kdlab.models import MODELS
from kdlab.runs.index import RunIndex
from kdlab.training import distributed, engine
from kdlab.training.engine import Engine, Recipe
from kdlab.training.meter import Meter
from kdlab.training.optim import OptimConfig
from kdlab.training.teachers import Teacher

# 515 = 8 × 64 + 3: the last global batch splits 2 + 1 (weights 4/3 and 2/3); evaluation batches of 100 give each
# process a block of batches (val 600 → 3 + 3, test 256 → 2 + 1, train 515 → 3 + 3)
RUN = [
    "distill",
    "teacher=pretrained:fashion_mnist_resnet20",
    "data.train_size=515",
    "data.test_size=256",
    "data.val_fraction=0.01",
    "data.batch_size=64",
    "data.eval_batch_size=100",
    "epochs=3",
    "student=mlp",
    "student.hidden=64",
    "independent=false",
    "device=cpu",
    "--quiet",
]
FILES = {"config.yaml", "run.json", "metrics.jsonl", "summary.json", "model.pt", "state.pt"}
RELATIVE = 1e-4  # float32 summation order over ~27 steps moves the figures by ~1e-7; a wrong weight, ~1e-3


def close(a: float, b: float) -> bool:
    return abs(a - b) <= RELATIVE * max(abs(a), abs(b), 1e-3)


def test_two_processes_give_the_one_process_run_and_only_rank_0_writes(
    fashion_mnist_available, one_thread, torchrun, tmp_path
):
    assert main([*RUN, f"runs_dir={tmp_path / 'one'}", "name=run"]) == 0
    # no name: rank 0's time-stamped one reaches rank 1
    out = torchrun(*RUN, f"runs_dir={tmp_path / 'two'}", timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("kd student") == 1 and "Traceback" not in out.stderr
    (folder,) = [p for p in (tmp_path / "two").iterdir() if p.is_dir()]
    assert {p.name for p in folder.iterdir()} == FILES == {p.name for p in (tmp_path / "one" / "run").iterdir()}
    rows = RunIndex(tmp_path / "two").rows()
    assert [(r["name"], r["status"]) for r in rows] == [(folder.name, "finished")]

    def read(path):
        lines = (path / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines], json.loads((path / "summary.json").read_text())["student"]

    (one, one_final), (two, two_final) = read(tmp_path / "one" / "run"), read(folder)
    assert len(one) == len(two) == 3
    for a, b in zip(one, two, strict=True):
        assert close(a["train"]["loss"], b["train"]["loss"]), (a["train"], b["train"])
        assert all(close(a["val"][k], b["val"][k]) for k in a["val"]), (a["val"], b["val"])
    for split in ("test", "train"):
        assert one_final[split]["accuracy"] == two_final[split]["accuracy"]
        assert one_final[split]["agreement"] == two_final[split]["agreement"]
        assert close(one_final[split]["kl"], two_final[split]["kl"]), (one_final[split], two_final[split])


def test_an_error_on_rank_0_ends_every_rank_and_is_reported_once(tmp_path, torchrun):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "config.yaml").write_text("name: taken\n")
    out = torchrun("train", "data=synthetic", f"runs_dir={tmp_path}", "name=taken", "--quiet", timeout=60)
    assert out.returncode != 0  # within the timeout: no rank was left waiting
    assert out.stderr.count("kdlab: error: The output folder") == 1 and "kdlab (rank 1)" not in out.stderr


def test_sequence_data_under_torchrun_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["distill", "data=conll2003", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "sentence data set" in err and "without torchrun" in err and "Traceback" not in err


def test_a_shard_takes_its_piece_of_each_batch_before_augmenting():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 256, (37, 1, 8, 8), generator=g, dtype=torch.uint8), torch.arange(37) % 3
    augment = Augment(crop=2, flip=True, vflip=True, rotation=15, brightness=0.2, contrast=0.2, noise=0.3)
    whole = TensorLoader(x, y, 8, shuffle=True, augment=augment, seed=4)
    for parts in (2, 3):
        shards = [whole.shard(r, parts) for r in range(parts)]
        for epoch in (0, 1):
            pieces = list(zip(*(s.epoch(epoch) for s in shards), strict=True))
            assert len(pieces) == len(shards[0]) == 5  # 37 = 4 × 8 + 5: 5 ≥ parts, nothing dropped
            for batch, piece in zip(whole.epoch(epoch), pieces, strict=True):
                assert [p.global_size for p in piece] == [len(batch)] * parts
                assert torch.equal(torch.cat([p.index for p in piece]), batch.index)  # contiguous, in order
                assert torch.allclose(torch.cat([p.x for p in piece]), batch.x, atol=1e-6)  # same views, same noise
                assert torch.equal(torch.cat([p.y for p in piece]), batch.y)
            seen = torch.cat([p.index for piece in pieces for p in piece])
            assert sorted(seen.tolist()) == list(range(37))  # every sample exactly once per epoch
    six = [whole.shard(r, 6) for r in range(6)]  # the last batch of 5 cannot feed 6 processes: every one drops it
    assert all(len(s) == len(list(s.epoch(0))) == 4 for s in six)
    mixed = TensorLoader(x, y, 8, shuffle=True, augment=Augment(mixup=1.0), seed=4).shard(1, 2)
    # mixup partners come from the same piece
    assert all(sorted(b.extras.mix_perm.tolist()) == list(range(len(b))) for b in mixed.epoch(0))
    with pytest.raises(ConfigError, match="global batch"):
        whole.shard(0, 9)


def test_loss_weights_make_the_average_of_uneven_pieces_the_whole_batch_gradient():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])

    def grad(xs, ys, weight=1.0):
        model.zero_grad()
        (weight * F.cross_entropy(model(xs), ys)).backward()
        return model.weight.grad.clone()

    whole = grad(x, y)
    pieces = [(x[:3], y[:3]), (x[3:], y[3:])]  # 5 split in 2: 3 + 2
    weighted = sum(grad(a, b, distributed.loss_weight(len(a), 5, 2)) for a, b in pieces) / 2  # what DDP averages
    plain = sum(grad(a, b) for a, b in pieces) / 2
    assert torch.allclose(weighted, whole, atol=1e-6) and not torch.allclose(plain, whole, atol=1e-3)
    assert distributed.part_bounds(5, 0, 2) == (0, 3) and distributed.part_bounds(5, 1, 2) == (3, 5)


def test_helpers_are_the_identity_in_one_process():
    t = torch.arange(6.0).reshape(3, 2)
    assert distributed.rank() == 0 and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.all_gather(t) is t and distributed.all_reduce(t) is t and distributed.broadcast_object(7) == 7
    assert distributed.on_main(lambda: "x") == "x" and distributed.block(5) == range(5)
    distributed.barrier()
    assert distributed.initialize(torch.device("cpu")) == torch.device("cpu")  # no torchrun: nothing to join


# --- two real processes (gloo), spawned without torchrun -------------------------------------------------------

DATA = load_dataset("synthetic", num_classes=4, image_size=8, train_size=99, test_size=8)  # 99 = 3 × 32 + 3


def _engine(path, hooks=()):
    """FitNets (a trainable regressor) on a BatchNorm-free CNN student, with crop/flip augmentation."""
    torch.manual_seed(0)
    teacher = Teacher(MODELS.get("cnn")(num_classes=4, in_channels=1, width=4))
    torch.manual_seed(1)
    student = MODELS.get("cnn")(num_classes=4, in_channels=1, width=4, norm="none")
    layers = {"student_layers": ["stage2"], "teacher_layers": ["stage2"], "regressor": "linear"}  # no BatchNorm
    method = build_method("fitnets", layers, MethodContext(student, teacher, 4, input_shape=(1, 8, 8)))
    teacher.tap(method.teacher_layers)
    loader = TensorLoader(DATA.train_x, DATA.train_y, 32, shuffle=True, augment=Augment(2, True), seed=0)
    return Engine(
        student=student,
        method=method,
        train=loader,
        recipe=Recipe(3, OptimConfig(lr=0.05), 0),
        state_path=path / "state.pt",
        teacher=online_teacher(teacher),
        hooks=list(hooks),
        progress=False,
    )


def _weights(e: Engine) -> dict[str, torch.Tensor]:
    return {**e.student.state_dict(), **{f"method.{k}": v for k, v in e.method.state_dict().items()}}


def _worker(rank: int, port: int, folder: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    assert distributed.initialize(torch.device("cpu")) == torch.device("cpu")
    try:
        assert distributed.rank() == rank and distributed.world_size() == 2 and distributed.is_main() == (rank == 0)
        mine = torch.full((rank + 1, 2), float(rank))  # lengths 1 and 2
        assert distributed.all_gather(mine).tolist() == [[0, 0], [1, 1], [1, 1]]
        gathered = distributed.gather(mine)
        assert (gathered is None) == (rank == 1) and (rank == 1 or gathered.shape == (3, 2))
        assert distributed.broadcast_object(f"name-{rank}") == "name-0" and distributed.any_rank(rank == 1)
        assert distributed.block(5) == (range(0, 3) if rank == 0 else range(3, 5))
        try:
            distributed.on_main(lambda: (_ for _ in ()).throw(ConfigError("taken")))
        except ConfigError as exc:
            assert str(exc) == "taken" and distributed.shared_error(exc)
        meter = Meter()  # rank 0 adds 1 and 3 with weight 1, rank 1 adds 2 and 4 with weight 0.5: mean of the sums
        for step, value in enumerate((1.0 + rank, 3.0 + rank)):
            meter.add({}, torch.tensor(value), step, 1.0 if rank == 0 else 0.5)
        assert meter.read() == ({"loss": ((1 + 3) + 0.5 * (2 + 4)) / 2 / 2}, -1)

        folder = Path(folder)
        whole = _engine(folder / f"whole-{rank}")  # a folder per rank: only rank 0's may appear
        assert whole.world == 2 and len(whole.train) == 4  # the last batch of 3 splits 2 + 1
        whole.fit()
        engine.SYNC_EVERY = 2  # stop requests are shared at sync points: here every second step

        def stop_on_rank_1(e, epoch, step):
            if rank == 1 and (epoch, step) == (1, 0):
                e.request_stop()

        with pytest.raises(Interrupted):
            _engine(folder / "cut", [stop_on_rank_1]).fit()
        distributed.barrier()
        resumed = _engine(folder / "cut")
        resumed.fit(resume=True)
        for key, value in _weights(whole).items():  # every rank's streams and the meter come back: bit-identical
            assert torch.equal(value, _weights(resumed)[key]), key
        if rank == 0:
            torch.save(_weights(whole), folder / "weights.pt")
            assert (folder / "cut" / "state.pt").is_file()
    finally:
        distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_collectives_and_a_ddp_engine_in_two_processes(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2)
    assert (tmp_path / "whole-0" / "state.pt").is_file() and not (tmp_path / "whole-1").exists()  # rank 0 writes
    one = _engine(tmp_path / "one")  # the same training in this single process
    one.fit()
    two = torch.load(tmp_path / "weights.pt")
    for key, value in _weights(one).items():  # student and FitNets regressor: gradients averaged alike
        assert torch.allclose(value, two[key], atol=1e-5, rtol=1e-4), key
