"""kdlab's version (kept here, at the bottom layer, so that every layer may record it)."""

__version__ = "0.1.0"
