import os
import tempfile
from pathlib import Path

import pytest

# teacher-output caches of the tests go to a fresh folder, never the user's ~/.cache
os.environ["KDLAB_CACHE"] = tempfile.mkdtemp(prefix="kdlab-test-cache-")

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
