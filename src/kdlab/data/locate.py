"""Where data sets are looked for on disk, and where downloads go."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

ENV_VAR = "KDLAB_DATA"


def cache_dir(name: str) -> Path:
    """The per-user download folder of data set ``name``: ``~/.cache/kdlab/<name>``."""
    return Path.home() / ".cache" / "kdlab" / name


def search_dirs(name: str, root: str | None, extra: Iterable[Path] = ()) -> list[Path]:
    """Folders to search: ``root`` alone if given, else ``$KDLAB_DATA/<name>``, the cache, then ``extra``."""
    if root is not None:
        return [Path(root).expanduser()]
    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]).expanduser() / name)
    dirs.append(cache_dir(name))
    dirs.extend(extra)
    return dirs


def download_dir(name: str, root: str | None) -> Path:
    """Where a download of data set ``name`` is written: ``root`` when given, else the cache folder."""
    return Path(root).expanduser() if root is not None else cache_dir(name)


def describe(dirs: Iterable[Path]) -> str:
    """The searched folders as one readable list, marking the ones that do not exist."""
    return ", ".join(f"{d}" + ("" if d.is_dir() else " (no such folder)") for d in dirs)
