"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009) from the official python-pickle archives.

Each batch file is a pickled dict: ``b"data"`` uint8 ``[n, 3072]`` (per image the red, green, blue
32x32 planes, row-major) and ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100).
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kdlab.core.errors import DataError
from kdlab.data.base import DATASETS, IMAGES, DataInfo, ImageData
from kdlab.data.download import download as fetch
from kdlab.data.locate import describe, download_dir, search_dirs
from kdlab.data.stats import uint8_pixel_stats

BASE_URL = "https://www.cs.toronto.edu/~kriz/"


@dataclass(frozen=True)
class CifarSpec:
    """Where one CIFAR variant keeps what inside its archive."""

    name: str
    archive: str
    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: bytes
    names_key: bytes
    num_classes: int
    md5: str


# fmt: off
SPECS = {
    "cifar10": CifarSpec("cifar10", "cifar-10-python.tar.gz", "cifar-10-batches-py",
                         tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta",
                         b"labels", b"label_names", 10, "c58f30108f718f92721af3b95e74349a"),
    "cifar100": CifarSpec("cifar100", "cifar-100-python.tar.gz", "cifar-100-python",
                          ("train",), "test", "meta",
                          b"fine_labels", b"fine_label_names", 100, "eb9058c3a382ffc7106e4002c42a8d85"),
}
# The only globals the official pickles (and numpy's own array pickles) refer to; anything else is refused,
# so a crafted file cannot run code on load.
_SAFE_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")} | {
    (f"numpy.{core}.{module}", name) for core in ("core", "_core")
    for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
}
# fmt: on


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a CIFAR batch file")
        return super().find_class(module, name)


def _unpickle(blob: bytes, where: str) -> dict:
    try:
        content = _SafeUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as error:  # pickle raises many types on garbage input
        raise DataError(
            f"Cannot read the CIFAR file {where}: {error}. It is damaged or not an official "
            f"CIFAR python batch; delete it and fetch the archive again."
        ) from None
    if not isinstance(content, dict):
        raise DataError(f"The CIFAR file {where} holds a {type(content).__name__}, expected a dict.")
    return content


def _read_members(spec: CifarSpec, source: Path) -> dict[str, bytes]:
    wanted = [*spec.train, spec.test, spec.meta]
    blobs: dict[str, bytes] = {}
    try:
        if source.is_dir():
            return {name: (source / name).read_bytes() for name in wanted}
        with tarfile.open(source, "r:gz") as tar:
            for member in tar:  # one sequential pass: seeking backwards in a .tar.gz re-decompresses it
                name = member.name.removeprefix("./").removeprefix(spec.folder + "/")
                if name in wanted and member.isfile() and (f := tar.extractfile(member)) is not None:
                    blobs[name] = f.read()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(
            f"Cannot read the archive {source}: {error}. It is damaged or incomplete (an "
            f"interrupted download?); delete it and download it again from {BASE_URL}{spec.archive}."
        ) from None
    missing = [name for name in wanted if name not in blobs]
    if missing:
        raise DataError(
            f"The archive {source} lacks {spec.folder}/{', '.join(missing)}; it is not the official "
            f"{spec.archive}. Download it again from {BASE_URL}{spec.archive}."
        )
    return blobs


def _locate(spec: CifarSpec, dirs: list[Path]) -> Path | None:
    members = [*spec.train, spec.test, spec.meta]
    for folder in dirs:
        for candidate in (folder / spec.folder, folder):
            if all((candidate / name).is_file() for name in members):
                return candidate
        if (folder / spec.archive).is_file():
            return folder / spec.archive
    return None


def _batch(spec: CifarSpec, blob: bytes, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    content = _unpickle(blob, where)
    try:
        data = np.asarray(content[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(content[spec.label_key], dtype=np.int64)
    except (KeyError, ValueError) as error:
        raise DataError(
            f"The CIFAR file {where} is not a valid batch ({error!r}): expected b'data' "
            f"uint8 [n, 3072] and {spec.label_key!r}. Fetch the official archive again."
        ) from None
    if len(labels) != len(data) or (labels.size and not 0 <= labels.min() <= labels.max() < spec.num_classes):
        raise DataError(
            f"The CIFAR file {where} holds {len(data)} images but {len(labels)} labels in "
            f"[{labels.min(initial=0)}, {labels.max(initial=0)}]; expected one label in "
            f"0..{spec.num_classes - 1} per image. Fetch the official archive again."
        )
    return torch.from_numpy(np.ascontiguousarray(data)), torch.from_numpy(labels)


def load_cifar(spec: CifarSpec, root: str | None, download: bool) -> ImageData:
    """Load a CIFAR variant from an extracted folder or the .tar.gz, downloading it when asked."""
    dirs = search_dirs(spec.name, root)
    source = _locate(spec, dirs)
    if source is None and download:
        source = fetch(BASE_URL + spec.archive, download_dir(spec.name, root) / spec.archive, spec.md5)
    if source is None:
        raise DataError(
            f"{spec.name.upper()} not found: looked for the folder {spec.folder}/ or the archive "
            f"{spec.archive} in {describe(dirs)}. Download {BASE_URL}{spec.archive} (MD5 {spec.md5}) into a "
            f"folder and pass data.root=DIR (no need to extract it), or set data.download=true to fetch it."
        )
    blobs = _read_members(spec, source)
    train = [_batch(spec, blobs[name], f"{source}:{name}") for name in spec.train]
    test_x, test_y = _batch(spec, blobs[spec.test], f"{source}:{spec.test}")
    train_x, train_y = torch.cat([x for x, _ in train]), torch.cat([y for _, y in train])
    names = _unpickle(blobs[spec.meta], f"{source}:{spec.meta}").get(spec.names_key, [])
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    mean, std = uint8_pixel_stats(train_x)
    info = DataInfo(spec.name, spec.num_classes, 3, (32, 32), mean, std, classes)
    return ImageData(info, train_x, train_y, test_x, test_y)


@DATASETS.register("cifar10", tasks=IMAGES)
def cifar10(root: str | None = None, download: bool = False) -> ImageData:
    """CIFAR-10: 50,000 train / 10,000 test 32x32 colour images in 10 classes."""
    return load_cifar(SPECS["cifar10"], root, download)


@DATASETS.register("cifar100", tasks=IMAGES)
def cifar100(root: str | None = None, download: bool = False) -> ImageData:
    """CIFAR-100 with its 100 fine labels: 50,000 train / 10,000 test 32x32 colour images."""
    return load_cifar(SPECS["cifar100"], root, download)
