"""Errors that reach the user as one clear paragraph instead of a traceback.

Every user mistake (a bad name, a wrong type, missing data, a broken checkpoint) raises a
:class:`KdlabError`; the command line prints its message and exits with ``exit_code``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class KdlabError(Exception):
    """A problem the user can fix; the message says what is wrong and what would be valid."""

    exit_code = 2


class ConfigError(KdlabError):
    """A bad configuration value, override or name."""


class DataError(KdlabError):
    """Data that cannot be found, read or used."""


class CheckpointError(KdlabError):
    """A checkpoint that cannot be read, or does not fit the model."""


class RunFolderError(KdlabError):
    """An output folder that holds another run."""


class TrainingStopped(KdlabError):
    """Training stopped on purpose (a non-finite loss); the last good checkpoint is kept."""

    exit_code = 3


class Interrupted(KdlabError):
    """The user pressed Ctrl-C; the state was saved and the run can be resumed."""

    exit_code = 130


def suggest(name: str, valid: Iterable[str], *, limit: int = 3) -> str:
    """Return ``" Did you mean 'x'?"`` for the nearest valid names, or an empty string."""
    close = difflib.get_close_matches(name, list(valid), n=limit, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> ConfigError:
    """The error for a name that is not one of ``valid``: names the bad value and lists the good ones."""
    valid = sorted(valid)
    return ConfigError(f"Unknown {kind} {name!r}.{suggest(name, valid)} Valid {kind}s: {', '.join(valid) or '(none)'}.")
