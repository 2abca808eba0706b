"""Atomic writes and careful reads of checkpoints and result files.

Nothing is written in place: a temporary file in the same folder is flushed to disk and renamed
over the target, so a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from kdlab.core.errors import CheckpointError


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600 files; results should be as readable as any other
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def save(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` made atomic."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getvalue())


def load(path: Path, *, what: str = "checkpoint") -> dict[str, Any]:
    """Read a checkpoint onto the CPU; a missing, truncated or foreign file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"The {what} {path} does not exist.")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # a zip archive (torch.save) or a legacy pickle
        raise CheckpointError(
            f"The {what} {path} is not a file kdlab wrote (not a PyTorch file: it begins with {head!r}). Give a "
            "model.pt or state.pt written by kdlab, or a run folder."
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load of a foreign file raises anything its unpickler meets (IndexError, ...)
        reason = (str(exc).splitlines()[0].split(". ")[0] if str(exc) else type(exc).__name__)[:200]
        raise CheckpointError(
            f"The {what} {path} is not a file kdlab wrote, or it is unreadable or truncated ({reason}). It may "
            "have been cut short by a full disk or an interrupted copy; restore it, or give a file written by "
            "kdlab (a model.pt or state.pt)."
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"The {what} {path} holds a {type(obj).__name__}, not a kdlab checkpoint.")
    return obj


def write_checked(path: Path, magic: bytes, state: dict[str, Any]) -> None:
    """A cache file that notices its own damage: ``magic`` (the layout), a ``torch.save`` of ``state`` (tensors and
    plain values) and a SHA-256 of both, written atomically. Read it with :func:`read_checked`."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    body = magic + buffer.getvalue()
    write_atomic(path, body + hashlib.sha256(body).digest())


def read_checked(path: Path, magic: bytes) -> dict[str, Any] | None:
    """The state of a :func:`write_checked` file, or None when it is missing, of another layout, cut short or
    damaged (the caller then rebuilds it)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    body, checksum = data[:-32], data[-32:]
    if not body.startswith(magic) or hashlib.sha256(body).digest() != checksum:
        return None
    try:
        state = torch.load(io.BytesIO(body[len(magic) :]), map_location="cpu", weights_only=True)
    except Exception:  # passed its checksum but not torch.load: written by another layout
        return None
    return state if isinstance(state, dict) else None
