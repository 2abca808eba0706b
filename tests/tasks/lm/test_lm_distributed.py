"""Language-model runs under torchrun (2 CPU processes, gloo): data parallel (DDP) and sharded (FSDP), each with
gradient-accumulation windows, give the one-process run — because every process's loss is its share of the window's
token sum (``Batch.global_share``) and the processes run the same micro-batches. The student has no dropout, so
what remains is float32 summation order."""

import json
import os
import subprocess
import sys

import pytest
import torch
from lm_jobs import SMALL, run

STUDENT = "student={name: hf, config: teacher, n_layer: 1, resid_pdrop: 0.0, embd_pdrop: 0.0, attn_pdrop: 0.0}"
JOB = ["distill", STUDENT, "method=lm_kd", "method.divergence=jsd", *SMALL[:-1], "data.prompt_length=16",
       "data.micro_batch_size=2", "data.train_size=64", "epochs=2", "optim.name=sgd", "optim.lr=0.5",
       "optim.momentum=0", "--quiet"]  # fmt: skip


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "kdlab"]
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("sharding", ["fsdp=false", "fsdp=true"])
def test_two_processes_train_the_one_process_student(capsys, tmp_path, lm_teacher, one_thread, sharding):
    code, _, err = run(capsys, *JOB, f"teacher={lm_teacher}", sharding, f"runs_dir={tmp_path}", "name=one")
    assert code == 0, err
    two = torchrun(*JOB, f"teacher={lm_teacher}", sharding, f"runs_dir={tmp_path}", "name=two")
    assert two.returncode == 0, two.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "state.pt", weights_only=False)
    b = torch.load(tmp_path / "two" / "state.pt", weights_only=False)
    assert max((a["student"][k] - b["student"][k]).abs().max().item() for k in a["student"]) < 1e-5
    one, two_summary = (json.loads((tmp_path / n / "summary.json").read_text()) for n in ("one", "two"))
    assert one["student"]["test"]["kl"] == pytest.approx(two_summary["student"]["test"]["kl"], rel=1e-4)
    assert (tmp_path / "two" / "model" / "config.json").is_file()


def test_a_batch_that_does_not_split_evenly_is_refused(tmp_path, lm_teacher):
    out = torchrun(*JOB, f"teacher={lm_teacher}", "data.batch_size=7", f"runs_dir={tmp_path}", "name=bad")
    assert out.returncode != 0 and "must be a multiple of 2" in out.stderr, out.stderr[-2000:]  # torchrun: 1
    assert out.stderr.count("kdlab: error:") == 1  # reported once, by rank 0
    assert not (tmp_path / "bad").exists()
