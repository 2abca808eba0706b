"""Language-model runs under torchrun (2 CPU processes, gloo): data parallel (DDP) and sharded (FSDP), each with
gradient-accumulation windows, give the one-process run — because every process's loss is its share of the window's
token sum (``Batch.global_share``) and the processes run the same micro-batches. The student has no dropout, so
what remains is float32 summation order."""

import json

import pytest
import torch
from lm_jobs import SMALL, run

STUDENT = "student={name: hf, config: teacher, n_layer: 1, resid_pdrop: 0.0, embd_pdrop: 0.0, attn_pdrop: 0.0}"
JOB = ["distill", STUDENT, "method=lm_kd", "method.divergence=jsd", *SMALL[:-1], "data.prompt_length=16",
       "data.micro_batch_size=2", "data.train_size=64", "epochs=2", "optim.name=sgd", "optim.lr=0.5",
       "optim.momentum=0", "--quiet"]  # fmt: skip


@pytest.mark.parametrize("sharding", ["fsdp=false", "fsdp=true"])
def test_two_processes_train_the_one_process_student(capsys, tmp_path, lm_teacher, one_thread, torchrun, sharding):
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


def test_fsdp_shards_the_teacher_too_with_the_top_k_cache_and_chunked_losses(
    capsys, tmp_path, lm_teacher, one_thread, torchrun
):
    """Under fsdp the teacher is sharded as well: the top-k cache is built by the teacher passes of both processes
    (rank 0 writes), the chunked loss reads the teacher's output head after its forward pass, and the student ends
    as in one process (which builds its own cache)."""
    job = [*JOB, "method.divergence=forward_kl", "cache.top_k=16", "method.chunk_size=24", f"teacher={lm_teacher}",
           "fsdp=true", f"runs_dir={tmp_path}"]  # fmt: skip
    code, _, err = run(capsys, *job, f"cache.dir={tmp_path / 'cache-one'}", "name=one")
    assert code == 0, err
    two = torchrun(*job, f"cache.dir={tmp_path / 'cache-two'}", "name=two")
    assert two.returncode == 0, two.stderr[-3000:]
    one_summary, two_summary = (json.loads((tmp_path / n / "summary.json").read_text()) for n in ("one", "two"))
    assert two_summary["teacher_source"]["sharded_over"] == 2 and "sharded_over" not in one_summary["teacher_source"]
    assert one_summary["teacher_source"]["built"] and two_summary["teacher_source"]["built"]
    caches = [next((tmp_path / c).iterdir()) for c in ("cache-one", "cache-two")]
    assert [p.name for p in caches[0].iterdir()] == [p.name for p in caches[1].iterdir()]
    for part in caches[0].iterdir():  # the same key (the sharded teacher's weights hashed whole) and the same rows
        assert part.read_bytes() == (caches[1] / part.name).read_bytes(), part.name
    a = torch.load(tmp_path / "one" / "state.pt", weights_only=False)
    b = torch.load(tmp_path / "two" / "state.pt", weights_only=False)
    assert max((a["student"][k] - b["student"][k]).abs().max().item() for k in a["student"]) < 1e-5
    assert one_summary["teacher"]["test"]["nll"] == pytest.approx(two_summary["teacher"]["test"]["nll"], rel=1e-5)


def test_a_batch_that_does_not_split_evenly_is_refused(tmp_path, lm_teacher, torchrun):
    out = torchrun(*JOB, f"teacher={lm_teacher}", "data.batch_size=7", f"runs_dir={tmp_path}", "name=bad")
    assert out.returncode != 0 and "must be a multiple of 2" in out.stderr, out.stderr[-2000:]  # torchrun: 1
    assert out.stderr.count("kdlab: error:") == 1  # reported once, by rank 0
    assert not (tmp_path / "bad").exists()
