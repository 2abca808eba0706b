"""Fetching a file over HTTP(S) into place atomically, with an optional MD5 check."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from kdlab.core.errors import DataError

CHUNK = 1 << 20


def download(url: str, dest: Path, md5: str | None = None, *, hint: str = "", timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    The bytes stream into a temporary file in ``dest``'s folder, which is renamed onto ``dest`` only
    once complete (and matching ``md5`` when given), so an interrupted download never leaves a
    half-written file where a reader would take it for the real one. ``hint`` is appended to errors.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as error:
        raise DataError(
            f"Cannot write the download of {url} into {dest.parent}: {error}. Pass data.root=DIR with a "
            f"folder you can write to.{hint}"
        ) from None
    tmp = Path(tmp_name)
    digest = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            size = int(response.headers.get("Content-Length") or 0) or None
            # disable=None: a progress bar on a terminal, silence in logs and tests.
            with tqdm(total=size, unit="B", unit_scale=True, desc=dest.name, disable=None) as progress:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    progress.update(len(chunk))
        if md5 is not None and digest.hexdigest() != md5.lower():
            raise DataError(
                f"The file downloaded from {url} has MD5 {digest.hexdigest()}, but {md5} was expected: "
                f"the download is corrupt or the server sent something else. It was not kept; try again, "
                f"or download it by hand, check it with `md5sum`, and place it at {dest}.{hint}"
            )
        tmp.chmod(0o644)  # mkstemp makes it private; a data file is meant to be shared
        os.replace(tmp, dest)
    except urllib.error.HTTPError as error:
        raise DataError(
            f"Could not download {url}: the server answered HTTP {error.code} ({error.reason}). "
            f"Download the file by hand from a working mirror and place it at {dest}.{hint}"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DataError(
            f"Could not download {url} to {dest}: {reason}. This machine appears to be offline (or cannot "
            f"reach the server, or cannot write there). Download the file on a machine with internet access "
            f"and copy it to {dest} (or to a folder passed as data.root=DIR).{hint}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest
