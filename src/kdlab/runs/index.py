"""The run index: one SQLite file under the runs root with a row per run.

Each ``kdlab train`` / ``kdlab distill`` records its run when it starts and again when it ends, so that
``kdlab runs`` can list, sort and filter every run without opening the run folders.

Several processes may write at the same moment (runs finishing together, ``torchrun`` ranks). Each call
opens its own short-lived connection; the file is in WAL mode so readers never block the writer; a write
takes the lock up front with ``BEGIN IMMEDIATE`` (a deferred transaction that upgrades a read lock can fail
at once with "database is locked" without waiting); and a locked database is retried with back-off.
"""

from __future__ import annotations

import random
import re
import sqlite3
import time
import typing
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TypeVar

from kdlab.core.errors import ConfigError, KdlabError, suggest

INDEX_FILE = "index.sqlite"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
_ATTEMPTS = 5
T = TypeVar("T")


@dataclass
class RunRecord:
    """One run, as the index stores it; metrics are fractions (0..1), not percentages."""

    name: str  # the run folder relative to the runs root, e.g. "main-20261122-1015/kd"; unique key
    command: str  # "train" | "distill"
    status: str  # "running" | "finished" | "failed" | "interrupted"
    started: str  # ISO-8601 UTC timestamp
    finished: str | None = None
    group: str | None = None  # multi-seed / comparison group folder, e.g. "main-20261122-1015"
    config_hash: str = ""
    method: str | None = None
    teacher: str | None = None
    student: str | None = None
    dataset: str | None = None
    seed: int | None = None
    epochs: int | None = None
    wall_time_s: float | None = None
    accuracy: float | None = None  # student test accuracy
    nll: float | None = None
    ece: float | None = None
    agreement: float | None = None  # test top-1 agreement with the teacher
    kl: float | None = None  # test predictive KL(teacher || student)
    tv: float | None = None
    train_agreement: float | None = None
    teacher_accuracy: float | None = None


def _sql_type(hint: object) -> str:
    args = typing.get_args(hint) or (hint,)
    return "INTEGER" if int in args else "REAL" if float in args else "TEXT"


_HINTS = typing.get_type_hints(RunRecord)
_TYPES: dict[str, str] = {f.name: _sql_type(_HINTS[f.name]) for f in fields(RunRecord)}
COLUMNS: tuple[str, ...] = tuple(_TYPES)
NUMERIC_COLUMNS = frozenset(c for c, t in _TYPES.items() if t != "TEXT")
_SELECT = ", ".join(f'"{c}"' for c in COLUMNS)  # quoted: "group" is an SQL keyword

_FILTER = re.compile(r"^\s*(\w+)\s*(<=|>=|!=|==|=|<|>|~)\s*(.+?)\s*$")
_FILTER_FORMS = (
    "column=value, column!=value, column<value, column<=value, column>value, column>=value "
    "and column~text (contains text)"
)
# '=' and '!=' are NULL-safe, so that 'teacher!=resnet56' keeps the train runs that have no teacher.
_SQL_OPS = {"=": "IS", "==": "IS", "!=": "IS NOT", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _check_column(name: str, where: str) -> None:
    if name not in COLUMNS:
        raise ConfigError(
            f"Unknown column {name!r} in the {where}.{suggest(name, COLUMNS)} Valid columns: {', '.join(COLUMNS)}."
        )


def _number(text: str, column: str, value: str) -> float | int:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        raise ConfigError(
            f"Filter {text!r} compares the numeric column {column!r} with {value!r}, which is not a number."
        ) from None


def _where(filters: Sequence[str]) -> tuple[str, list[object]]:
    """Turn filter strings into an SQL ``WHERE`` clause with ``?`` parameters (values never enter the SQL)."""
    clauses: list[str] = []
    params: list[object] = []
    for text in filters:
        match = _FILTER.match(text)
        if match is None:
            raise ConfigError(
                f"Malformed filter {text!r}. A filter has one of the forms {_FILTER_FORMS}; "
                "for example method=kd, accuracy>0.9, student~cnn, status!=failed."
            )
        column, op, value = match.groups()
        _check_column(column, f"filter {text!r}")
        if op == "~":
            clauses.append(f'instr(lower(CAST("{column}" AS TEXT)), lower(?)) > 0')
            params.append(value)
        else:
            clauses.append(f'"{column}" {_SQL_OPS[op]} ?')
            params.append(_number(text, column, value) if column in NUMERIC_COLUMNS else value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class RunIndex:
    """The index file ``root/index.sqlite``; it is created on the first :meth:`record`."""

    COLUMNS: tuple[str, ...] = COLUMNS

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.path = self.root / INDEX_FILE

    def record(self, rec: RunRecord) -> None:
        """Insert ``rec``, or replace the row with the same name, in one transaction."""
        if not rec.name:
            raise ConfigError("A run record needs a non-empty name (the run folder relative to the root).")
        values = asdict(rec)
        row = [_coerce(values[c], _TYPES[c]) for c in COLUMNS]
        sql = f"INSERT OR REPLACE INTO runs ({_SELECT}) VALUES ({', '.join('?' * len(COLUMNS))})"

        def write(conn: sqlite3.Connection) -> None:
            self._ensure_schema(conn)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(sql, row)
            conn.execute("COMMIT")

        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise KdlabError(f"Cannot create the runs folder {self.root}: {err}.") from None
        self._attempt(write)

    def rows(
        self,
        *,
        sort: str | None = None,
        descending: bool = False,
        filters: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[dict[str, object]]:
        """The runs that pass every filter, sorted by ``sort`` (default ``started``) with NULLs last."""
        sort = sort or "started"
        _check_column(sort, "sort")
        where, params = _where((filters,) if isinstance(filters, str) else filters)
        if limit is not None and limit < 0:
            raise ConfigError(f"The row limit must be zero or more, not {limit}.")
        if not self.path.exists():
            return []
        direction = "DESC" if descending else "ASC"
        sql = f'SELECT {_SELECT} FROM runs{where} ORDER BY "{sort}" IS NULL, "{sort}" {direction}, "name"'
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)

        def read(conn: sqlite3.Connection) -> list[dict[str, object]]:
            self._ensure_schema(conn)
            return [dict(zip(COLUMNS, row, strict=True)) for row in conn.execute(sql, params)]

        return self._attempt(read)

    def _attempt(self, action: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``action`` on a fresh connection, retrying with back-off while the database is locked."""
        for attempt in range(_ATTEMPTS):
            try:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
                with closing(conn):  # closing rolls back an unfinished transaction
                    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                    conn.execute("PRAGMA journal_mode = WAL")
                    return action(conn)
            except sqlite3.DatabaseError as err:
                locked = "locked" in str(err) or "busy" in str(err)
                if isinstance(err, sqlite3.OperationalError) and locked and attempt < _ATTEMPTS - 1:
                    time.sleep(0.05 * 2**attempt * (1 + random.random()))
                    continue
                problem = self._explain(err)
                if problem is None:
                    raise
                raise problem from None
        raise AssertionError("unreachable")

    def _explain(self, err: sqlite3.DatabaseError) -> KdlabError | None:
        message = str(err).lower()
        if "not a database" in message or "malformed" in message or "encrypted" in message:
            return KdlabError(
                f"{self.path} is not a kdlab run index (SQLite says: {err}). Move it away, for example "
                f"rename it to {self.path.name}.bak; kdlab then starts a fresh index in {self.root}."
            )
        if "locked" in message or "busy" in message:
            return KdlabError(
                f"The run index {self.path} stayed locked by another process for over {BUSY_TIMEOUT_S:.0f} s "
                f"after {_ATTEMPTS} tries. Try again when the other kdlab processes have finished."
            )
        if "unable to open" in message or "readonly" in message or "disk i/o" in message:
            return KdlabError(f"Cannot use the run index {self.path} ({err}). Check that it is writable.")
        return None

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        """Create the tables on first use and add columns that an older schema lacks."""
        if self._version(conn) == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        if self._version(conn) == SCHEMA_VERSION:  # another process got there first
            conn.execute("COMMIT")
            return
        columns = ", ".join(f'"{c}" {t}' for c, t in _TYPES.items())
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute(f'CREATE TABLE IF NOT EXISTS runs ({columns}, PRIMARY KEY ("name"))')
        present = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        for column in COLUMNS:
            if column not in present:
                conn.execute(f'ALTER TABLE runs ADD COLUMN "{column}" {_TYPES[column]}')
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")

    def _version(self, conn: sqlite3.Connection) -> int | None:
        """The stored schema version; None for a fresh file; an error for a newer or foreign database."""
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            if tables - {"runs"}:
                raise KdlabError(
                    f"{self.path} is an SQLite database but not a kdlab run index (it holds the tables "
                    f"{', '.join(sorted(tables))}). Move it away; kdlab then starts a fresh index."
                )
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else None
        if version is not None and version > SCHEMA_VERSION:
            raise KdlabError(
                f"The run index {self.path} has schema version {version}, but this kdlab reads versions up "
                f"to {SCHEMA_VERSION}. Upgrade kdlab, or move the index away to start a fresh one."
            )
        return version


def _coerce(value: object, sql_type: str) -> object:
    """Plain Python numbers for SQLite, which cannot bind e.g. ``numpy.int64`` or a 0-d tensor."""
    if value is None:
        return None
    if sql_type == "TEXT":
        return str(value)
    return int(value) if sql_type == "INTEGER" else float(value)  # type: ignore[call-overload]
