"""Plain-text tables for the terminal, with no dependency.

>>> print(format_table(["method", "acc"], [["kd", "91.20"], ["fitnet", None]]))
method    acc
------  -----
kd      91.20
fitnet      -
"""

from __future__ import annotations

import numbers
import statistics
from collections.abc import Sequence

MISSING = "-"
_GAP = "  "


def _text(value: object) -> str:
    """A cell as text: ``None`` is ``-``; a bare float gets 4 significant digits; the rest as given."""
    if value is None:
        return MISSING
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{float(value):.4g}"
    return str(value)


def _is_number(value: object) -> bool:
    """True for numbers and for pre-formatted numbers such as ``"91.2"``, ``"3.5%"`` or ``"91.2 ± 0.4"``."""
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    if not isinstance(value, str):
        return False
    try:
        for part in value.replace("%", "").split("±"):
            float(part)
    except ValueError:
        return False
    return True


def _column_align(values: Sequence[object]) -> str:
    present = [v for v in values if v is not None and v not in (MISSING, "")]
    return "r" if present and all(_is_number(v) for v in present) else "l"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, align: str | None = None) -> str:
    """A monospace table: a header, a rule of dashes, then one line per row.

    Columns are two spaces apart. Numeric columns (numbers or number-like strings) are right-aligned and text
    is left-aligned, unless ``align`` gives one letter per column, ``"l"`` or ``"r"`` (e.g. ``"lrr"``).
    """
    width = len(headers)
    if any(len(row) != width for row in rows):
        raise ValueError(f"every row of the table needs {width} cells, one per header")
    if align is None:
        align = "".join(_column_align([row[j] for row in rows]) for j in range(width))
    elif len(align) != width or set(align) - {"l", "r"}:
        raise ValueError(f"align must hold one letter 'l' or 'r' per column ({width}), not {align!r}")
    cells = [[_text(v) for v in row] for row in rows]
    widths = [max([len(str(h)), *(len(row[j]) for row in cells)]) for j, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = (v.rjust(w) if a == "r" else v.ljust(w) for v, w, a in zip(values, widths, align, strict=True))
        return _GAP.join(padded).rstrip()

    lines = [line([str(h) for h in headers]), line(["-" * w for w in widths])]
    lines += [line(row) for row in cells]
    return "\n".join(lines)


def mean_std(values: Sequence[float | None], *, scale: float = 1.0, digits: int = 2) -> str:
    """``"mean ± std"`` of ``values`` times ``scale`` (sample std, ddof=1), e.g. ``"91.23 ± 0.41"``.

    ``None`` values (runs without that metric) are skipped; one value is shown alone; none gives ``-``.
    """
    scaled = [float(v) * scale for v in values if v is not None]
    if not scaled:
        return MISSING
    mean = statistics.fmean(scaled)
    if len(scaled) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(scaled):.{digits}f}"
