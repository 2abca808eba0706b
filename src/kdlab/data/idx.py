"""Reading and writing IDX files, the format of (Fashion-)MNIST.

Layout: two zero bytes, a type code, the number of dimensions, one big-endian uint32 per dimension,
then the values in C order. Images are magic 2051 (uint8, dims N, H, W), labels 2049 (uint8, dim N).
A ``.gz`` suffix means the file is gzip-compressed.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from kdlab.core.errors import DataError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_KINDS = {IMAGES_MAGIC: "images (uint8, 3 dimensions)", LABELS_MAGIC: "labels (uint8, 1 dimension)"}
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FIX = "The file is damaged or incomplete (an interrupted download?): delete it and fetch it again."


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        if path.suffix != ".gz":
            return raw
        # One-shot zlib is ~25 % faster than gzip.open().read() on the 26 MB Fashion-MNIST file.
        stream = zlib.decompressobj(wbits=31)
        data = stream.decompress(raw)
        if not stream.eof:
            raise EOFError("the compressed stream ends early")
        return gzip.decompress(raw) if stream.unused_data else data  # rare multi-member .gz
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"Cannot read the IDX file {path}: {error}. {_FIX}") from None


def read_idx(path: str | Path, magic: int | None = None) -> np.ndarray:
    """Read an IDX file (plain or ``.gz``) into a native-endian, writable numpy array.

    With ``magic`` given (2051 images, 2049 labels) any other file type is a :class:`DataError`, as is a
    file whose size does not match its header.
    """
    path = Path(path)
    raw = _read_bytes(path)
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    valid_header = found is not None and raw[0] == 0 and raw[1] == 0 and raw[2] in _DTYPES
    if not valid_header or (magic is not None and found != magic):
        expected = f"{magic} for IDX {_KINDS.get(magic, 'data')}" if magic is not None else "an IDX header"
        raise DataError(
            f"{path} is not the expected IDX file: its magic number is {found} (bytes {raw[:4].hex()}), "
            f"expected {expected}. Check that the file is the right one (images vs labels) and not "
            f"an HTML error page or another format; {_FIX[0].lower()}{_FIX[1:]}"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{path} is truncated: its header announces {ndim} dimensions ({header} header bytes) but the "
            f"file holds only {len(raw)} bytes. {_FIX}"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected_size = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected_size:
        what = "truncated" if len(raw) < expected_size else "longer than its header says"
        raise DataError(
            f"{path} is {what}: its header announces shape {shape}, i.e. {expected_size} bytes"
            f"{' after decompression' if path.suffix == '.gz' else ''}, but it holds {len(raw)} bytes. {_FIX}"
        )
    # astype copies into native byte order: the result is writable and safe to hand to torch.from_numpy.
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``); returns the path."""
    path = Path(path)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}
    dtype = np.dtype(array.dtype).newbyteorder("=")
    if dtype not in codes:
        raise DataError(f"IDX cannot store dtype {array.dtype}; valid: uint8, int8, int16, int32, float32, float64.")
    code = codes[dtype]
    head = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    body = np.ascontiguousarray(array, _DTYPES[code]).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(head + body)
    return path
