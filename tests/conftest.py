import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

# teacher-output caches of the tests go to a fresh folder, never the user's ~/.cache
os.environ["KDLAB_CACHE"] = tempfile.mkdtemp(prefix="kdlab-test-cache-")
# Hugging Face models and tokenizers load from local folders only: the tests never reach for the hub
os.environ["HF_HUB_OFFLINE"] = "1"

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def fashion_mnist_available() -> None:
    """Fashion-MNIST from the Debian package (installed by .ci/run); skipped with a visible reason otherwise."""
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed: apt-get install -y dataset-fashion-mnist")


@pytest.fixture(scope="session")
def synthetic_teacher(tmp_path_factory) -> Path:
    """A small teacher trained on the 4-class synthetic images (8×8, one channel); returns its run folder."""
    import kdlab

    runs = tmp_path_factory.mktemp("teacher-runs")
    result = kdlab.train("cnn", "synthetic", epochs=4, lr=0.1, runs_dir=runs, name="teacher", device="cpu")
    assert result.metrics["student"]["test"]["accuracy"] > 0.5
    return result.run_dir


def _interrupt(args: list[str], once: Path, env: dict[str, str]) -> tuple[int, str]:
    """Start the command ``args``, press Ctrl-C as soon as ``once`` exists (a run's first checkpoint), and return
    its exit code and stderr."""
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not once.exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.fixture
def interrupt() -> Callable[[list[str], Path, dict[str, str]], tuple[int, str]]:
    """Ctrl-C a kdlab command at its first checkpoint (see :func:`_interrupt`)."""
    return _interrupt


def _torchrun(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 -m kdlab ARGS``, each worker on one thread (gloo on CPU)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "kdlab"]
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def torchrun() -> Callable[..., subprocess.CompletedProcess]:
    """Run a kdlab command in two torchrun processes (see :func:`_torchrun`)."""
    return _torchrun


@pytest.fixture
def one_thread():
    """This process computes like each torchrun worker (OMP_NUM_THREADS=1), and gets its threads back after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

