"""The cache on disk: a folder of ``.npy`` arrays ``[N, K, ...]`` (sample, view, ...) read as memory maps, and
``meta.json`` holding the key they were computed from and every array's checksum.

A cache is written into a temporary folder and renamed into place when complete, so a reader never sees a
half-written one; an interrupted build leaves only a temporary folder, removed by the next build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdlab.cache.key import differences
from kdlab.cache.topk import compress_top_k, restore_top_k
from kdlab.core.errors import KdlabError
from kdlab.core.outputs import ModelOutput

META = "meta.json"
NUMPY = {torch.int32: np.int32, torch.int16: np.int16, torch.float16: np.float16}  # the stored dtypes but float32


class StaleCacheError(KdlabError):
    """A cache exists but was computed from other inputs (teacher weights, data, views...)."""


class CachedOutputs:
    """Teacher outputs per (sample, view): logits (whole, or top-k + tail bucket) and tapped features."""

    def __init__(self, folder: Path, meta: dict[str, Any], arrays: dict[str, torch.Tensor]) -> None:
        self.folder, self.meta, self.arrays = folder, meta, arrays
        self.num_classes: int = meta["num_classes"]

    @property
    def views(self) -> int:
        return int(self.meta["views"])

    @property
    def nbytes(self) -> int:
        return sum(a.numel() * a.element_size() for a in self.arrays.values())

    def to(self, device: torch.device) -> CachedOutputs:
        """The same cache with its tables copied to ``device`` (on CPU the memory maps are used in place)."""
        if device.type == "cpu":
            return self
        return CachedOutputs(self.folder, self.meta, {k: v.to(device) for k, v in self.arrays.items()})

    def logits(self, index: torch.Tensor, view: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, c]`` of samples ``index`` in views ``view`` (None: view 0)."""
        view = torch.zeros_like(index) if view is None else view
        if "logits" in self.arrays:
            return self.arrays["logits"][index, view]
        values, indices, tail = (self.arrays[name][index, view] for name in ("values", "indices", "tail"))
        return restore_top_k(values, indices, tail, self.num_classes)

    def __call__(self, index: torch.Tensor, view: torch.Tensor | None = None) -> ModelOutput:
        features = {
            name.removeprefix("feature:"): table[index, torch.zeros_like(index) if view is None else view]
            for name, table in self.arrays.items()
            if name.startswith("feature:")
        }
        return ModelOutput(logits=self.logits(index, view), features=features)


def checksum(path: Path, chunk: int = 8 << 20) -> str:
    """SHA-256 of a file's bytes: checked for every array when a cache is opened, so an array damaged in place
    (even one that keeps its size) is found and the cache rebuilt (≈ 1 GB/s on one core)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _file(name: str) -> str:
    return name.replace(":", "-").replace("/", "_") + ".npy"


def open_cache(folder: Path, key: dict[str, Any]) -> CachedOutputs:
    """Open a complete cache computed from ``key``; ``FileNotFoundError`` when there is none, ``StaleCacheError``
    naming what differs when it was computed from something else."""
    meta_path = folder / META
    if not meta_path.is_file():
        raise FileNotFoundError(meta_path)
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or not isinstance(meta.get("arrays"), list):
            raise ValueError("not a cache description")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StaleCacheError(f"The teacher-output cache {folder} is damaged ({META}: {exc}).") from None
    changed = differences(meta.get("key", {}), key)
    if changed:
        raise StaleCacheError(
            f"The teacher-output cache {folder} was computed from other inputs ({', '.join(changed)} differ)."
        )
    arrays = {}
    checksums = meta.get("checksums", {})
    for name in meta["arrays"]:
        path = folder / _file(name)
        if not path.is_file() or checksum(path) != checksums.get(name):
            raise StaleCacheError(
                f"The teacher-output cache {folder} is damaged ({path.name} is missing or does not match its checksum)."
            )
        try:  # copy-on-write maps: writable for torch, never written back
            arrays[name] = torch.from_numpy(np.load(path, mmap_mode="c"))
            if name in ("logits", "values") and meta.get("value_dtype") == "bfloat16":
                arrays[name] = arrays[name].view(torch.bfloat16)
        except (OSError, ValueError) as exc:
            raise StaleCacheError(f"The teacher-output cache {folder} is damaged ({path.name}: {exc}).") from None
    return CachedOutputs(folder, meta, arrays)


def valid_cache(
    folder: Path, key: dict[str, Any], log: Callable[[str], None] = lambda message: None
) -> CachedOutputs | None:
    """The complete cache in ``folder`` made for ``key``, or None when there is none or it is stale (``log`` says
    what differs, before it is rebuilt)."""
    try:
        return open_cache(folder, key)
    except FileNotFoundError:
        return None
    except StaleCacheError as exc:
        log(f"{exc} Rebuilding it.")
        return None


class CacheWriter:
    """Fills a new cache of ``size`` samples × ``views`` views, then :meth:`commit` puts it in place."""

    def __init__(
        self, folder: Path, key: dict[str, Any], size: int, views: int, top_k: int | None, value_dtype: str = "float32"
    ) -> None:
        self.folder, self.key, self.size, self.views, self.top_k = folder, key, size, views, top_k
        self.value_dtype = value_dtype  # of the logits / top-k values: float32, float16 or bfloat16 (stored as bits)
        self.tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        for old in folder.parent.glob(f"{folder.name}.tmp-*"):
            shutil.rmtree(old, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.arrays: dict[str, np.ndarray] = {}
        self.num_classes = 0

    def _put(self, name: str, index: np.ndarray, view: int, values: torch.Tensor, dtype: str = "float32") -> None:
        if values.dtype != torch.int32:
            values = values.to(getattr(torch, dtype))
            values = values.view(torch.int16) if values.dtype == torch.bfloat16 else values  # numpy has no bfloat16
        if name not in self.arrays:
            shape = (self.size, self.views, *values.shape[1:])
            np_dtype = NUMPY.get(values.dtype, np.float32)
            self.arrays[name] = np.lib.format.open_memmap(self.tmp / _file(name), "w+", np_dtype, shape)
        self.arrays[name][index, view] = values.cpu().numpy()

    def write(self, index: torch.Tensor, view: int, outputs: ModelOutput) -> None:
        """Store the outputs of samples ``index`` in view ``view``."""
        at = index.cpu().numpy()
        logits = outputs.logits.float()
        self.num_classes = logits.shape[-1]
        if self.top_k is None:
            self._put("logits", at, view, logits, self.value_dtype)
        else:
            values, indices, tail = compress_top_k(logits, self.top_k)
            self._put("values", at, view, values, self.value_dtype)
            self._put("indices", at, view, indices)
            self._put("tail", at, view, tail)
        for layer, value in outputs.features.items():
            self._put(f"feature:{layer}", at, view, value.float())

    def commit(self) -> None:
        for array in self.arrays.values():
            array.flush()
        meta = {"key": self.key, "arrays": sorted(self.arrays), "samples": self.size, "views": self.views}
        meta["checksums"] = {name: checksum(self.tmp / _file(name)) for name in sorted(self.arrays)}
        meta["num_classes"] = self.num_classes
        meta["value_dtype"] = self.value_dtype
        (self.tmp / META).write_text(json.dumps(meta, indent=1))
        self.arrays.clear()
        if self.folder.exists():  # a stale cache, or one another process finished meanwhile: replace it
            shutil.rmtree(self.folder)
        os.replace(self.tmp, self.folder)

    def abandon(self) -> None:
        self.arrays.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
