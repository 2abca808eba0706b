"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 70,000 28x28 greyscale images of clothing, 10 classes."""

from __future__ import annotations

from pathlib import Path

import torch

from kdlab.core.errors import DataError
from kdlab.data.base import DATASETS, IMAGES, DataInfo, ImageData
from kdlab.data.download import download as fetch
from kdlab.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from kdlab.data.locate import describe, download_dir, search_dirs
from kdlab.data.stats import uint8_pixel_stats

URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian/Ubuntu package dataset-fashion-mnist
FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
MD5 = {  # of the official .gz files
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
HOW_TO_GET = (
    f"To get them: `apt-get install -y dataset-fashion-mnist` (Debian/Ubuntu, installs to {SYSTEM_DIR}), "
    f"or download the four .gz files from {URL}<file>.gz (e.g. {URL}train-images-idx3-ubyte.gz) into one "
    f"folder and pass data.root=DIR, or set data.download=true to fetch them automatically."
)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _locate(dirs: list[Path]) -> dict[str, Path] | None:
    for folder in dirs:
        found = {key: _find(folder, stem) for key, stem in FILES.items()}
        if all(found.values()):
            return {key: path for key, path in found.items() if path is not None}
    return None


def _fetch_missing(folder: Path) -> None:
    for stem in FILES.values():
        if _find(folder, stem) is None:
            fetch(URL + stem + ".gz", folder / (stem + ".gz"), MD5.get(stem), hint=" " + HOW_TO_GET)


def _check(files: dict[str, Path], images: torch.Tensor, labels: torch.Tensor, split: str) -> None:
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (1, 28, 28):
        raise DataError(
            f"The Fashion-MNIST {split} files do not fit together: {files[split + '_x']} holds "
            f"{images.shape[0]} images of shape {tuple(images.shape[1:])}, {files[split + '_y']} holds "
            f"{labels.shape[0]} labels (expected N images of 1x28x28 and N labels). Replace the files with "
            f"the official ones. {HOW_TO_GET}"
        )
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(
            f"{files[split + '_y']} holds labels from {int(labels.min())} to {int(labels.max())}; "
            f"Fashion-MNIST labels are 0..9. Replace the file with the official one. {HOW_TO_GET}"
        )


@DATASETS.register("fashion_mnist", tasks=IMAGES)
def fashion_mnist(root: str | None = None, download: bool = False) -> ImageData:
    """Fashion-MNIST from IDX files (plain or .gz) in root, $KDLAB_DATA, the cache or the Debian package."""
    dirs = search_dirs("fashion_mnist", root, extra=[SYSTEM_DIR])
    files = _locate(dirs)
    if files is None and download:
        target = download_dir("fashion_mnist", root)
        _fetch_missing(target)
        files = _locate([target])
    if files is None:
        names = ", ".join(f"{stem}(.gz)" for stem in FILES.values())
        raise DataError(f"Fashion-MNIST not found: looked for {names} in {describe(dirs)}. {HOW_TO_GET}")
    tensors = {
        key: torch.from_numpy(read_idx(path, IMAGES_MAGIC if key.endswith("_x") else LABELS_MAGIC))
        for key, path in files.items()
    }
    train_x, test_x = tensors["train_x"].unsqueeze(1), tensors["test_x"].unsqueeze(1)
    train_y, test_y = tensors["train_y"].long(), tensors["test_y"].long()
    _check(files, train_x, train_y, "train")
    _check(files, test_x, test_y, "test")
    mean, std = uint8_pixel_stats(train_x)
    info = DataInfo("fashion_mnist", len(CLASSES), 1, (28, 28), mean, std, CLASSES)
    return ImageData(info, train_x, train_y, test_x, test_y)
