"""matplotlib without a display, and PNG files written atomically — shared by every figure kdlab draws."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from kdlab.core.files import write_atomic


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (imported on first use: plotting is optional work)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: str | Path, dpi: int = 110, tight: bool = True) -> str:
    """Write ``fig`` to ``path`` as a PNG (temporary file + rename), close it and return the file name."""
    if tight:
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(fig)
    write_atomic(Path(path), buffer.getvalue())
    return Path(path).name
