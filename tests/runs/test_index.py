"""The SQLite run index: round trip, upsert, concurrent writers, sorting, filters and clear errors."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from kdlab.core.errors import ConfigError, KdlabError
from kdlab.runs.index import INDEX_FILE, SCHEMA_VERSION, RunIndex, RunRecord


def run(name: str, **fields: object) -> RunRecord:
    base: dict[str, object] = {"command": "distill", "status": "finished", "started": "2026-11-22T10:15:00Z"}
    return RunRecord(name=name, **{**base, **fields})  # type: ignore[arg-type]


@pytest.fixture
def index(tmp_path: Path) -> RunIndex:
    idx = RunIndex(tmp_path / "runs")
    records = [
        run(
            "g/kd",
            method="kd",
            student="cnn_small",
            dataset="fashion_mnist",
            accuracy=0.9,
            epochs=10,
            started="2026-11-22T10:00:00Z",
            teacher="resnet56",
        ),
        run(
            "g/fitnet",
            method="fitnet",
            student="mlp",
            dataset="fashion_mnist",
            accuracy=0.85,
            epochs=9,
            started="2026-11-22T11:00:00Z",
            status="failed",
            teacher="resnet56",
        ),
        run(
            "base",
            command="train",
            method=None,
            student="cnn_large",
            dataset="mnist",
            accuracy=None,
            epochs=100,
            started="2026-11-22T09:00:00Z",
        ),
    ]
    for rec in records:
        idx.record(rec)
    return idx


def names(rows: list[dict[str, object]]) -> list[object]:
    return [row["name"] for row in rows]


def test_round_trip_is_lazy_and_upsert_replaces(tmp_path: Path) -> None:
    idx = RunIndex(tmp_path / "new" / "runs")
    assert idx.rows() == [] and not (tmp_path / "new").exists()  # reading creates nothing
    rec = run("main-1/kd", group="main-1", seed=3, wall_time_s=12.5, accuracy=0.91, kl=0.02)
    idx.record(rec)
    assert (tmp_path / "new" / "runs" / INDEX_FILE).is_file()
    assert idx.rows() == [{c: getattr(rec, c) for c in RunIndex.COLUMNS}]
    idx.record(run("main-1/kd", group="main-1", status="failed", accuracy=0.5))
    rows = idx.rows()
    assert len(rows) == 1 and rows[0]["status"] == "failed" and rows[0]["accuracy"] == 0.5
    assert rows[0]["seed"] is None  # replaced, not merged
    with sqlite3.connect(idx.path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def _writer(root: str, worker: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    idx = RunIndex(root)
    barrier.wait()
    for i in range(25):
        idx.record(run(f"w{worker}/run{i}", seed=i, accuracy=i / 25))


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, barrier)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert len(RunIndex(tmp_path).rows()) == 100
    with sqlite3.connect(tmp_path / INDEX_FILE) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(DISTINCT name) FROM runs").fetchone() == (100,)


def test_sort_nulls_last_both_ways(index: RunIndex) -> None:
    assert names(index.rows()) == ["base", "g/kd", "g/fitnet"]  # by started
    assert names(index.rows(sort="accuracy")) == ["g/fitnet", "g/kd", "base"]
    assert names(index.rows(sort="accuracy", descending=True)) == ["g/kd", "g/fitnet", "base"]
    assert names(index.rows(sort="epochs", descending=True, limit=2)) == ["base", "g/kd"]
    assert names(index.rows(sort="method")) == ["g/fitnet", "g/kd", "base"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["method=kd"], ["g/kd"]),
        (["dataset=fashion_mnist"], ["g/kd", "g/fitnet"]),
        (["accuracy>0.85"], ["g/kd"]),
        (["accuracy>=0.85"], ["g/kd", "g/fitnet"]),
        (["accuracy<0.9"], ["g/fitnet"]),
        (["epochs<=10"], ["g/kd", "g/fitnet"]),
        (["epochs>9"], ["base", "g/kd"]),  # numeric: as text "100" < "9" and "10" < "9"
        (["epochs=100"], ["base"]),
        (["student~CNN"], ["base", "g/kd"]),  # substring, case-insensitive
        (["status!=failed"], ["base", "g/kd"]),
        (["teacher!=resnet56"], ["base"]),  # a missing teacher is not resnet56
        (["dataset=fashion_mnist", "student~cnn"], ["g/kd"]),
        (["method = kd"], ["g/kd"]),
        (["method=x' OR '1'='1"], []),  # values are SQL parameters
    ],
)
def test_filters(index: RunIndex, filters: list[str], expected: list[str]) -> None:
    assert names(index.rows(filters=filters)) == expected


def test_numeric_comparison_is_numeric(tmp_path: Path) -> None:
    idx = RunIndex(tmp_path)
    idx.record(run("a", accuracy=0.9))
    assert idx.rows(filters=["accuracy<0.85"]) == []  # as text, "0.9" < "0.85" would be true


@pytest.mark.parametrize(("kwargs", "bad"), [({"sort": "acuracy"}, "acuracy"), ({"filters": ["modle=kd"]}, "modle")])
def test_unknown_column(index: RunIndex, kwargs: dict[str, object], bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        index.rows(**kwargs)  # type: ignore[arg-type]
    message = str(err.value)
    assert bad in message and "accuracy" in message and "method" in message and "Did you mean" in message


@pytest.mark.parametrize("bad", ["method", "=kd", "method=", "accuracy>>0.9", "accuracy>high", ""])
def test_malformed_filter(index: RunIndex, bad: str) -> None:
    with pytest.raises(ConfigError, match=r"filter|number"):
        index.rows(filters=[bad])


@pytest.mark.parametrize("garbage", [b"hello", b"\x00\xff not sqlite at all " * 100])
def test_garbage_file_is_a_clear_error(tmp_path: Path, garbage: bytes) -> None:
    (tmp_path / INDEX_FILE).write_bytes(garbage)
    idx = RunIndex(tmp_path)
    for call in (idx.rows, lambda: idx.record(run("x"))):
        with pytest.raises(KdlabError, match="not a kdlab run index") as err:
            call()
        assert not isinstance(err.value, sqlite3.DatabaseError) and INDEX_FILE in str(err.value)
    assert (tmp_path / INDEX_FILE).read_bytes() == garbage  # left untouched


def test_foreign_or_newer_database_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / INDEX_FILE) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(KdlabError, match="not a kdlab run index"):
        RunIndex(tmp_path).rows()
    idx = RunIndex(tmp_path / "newer")
    idx.record(run("a"))
    with sqlite3.connect(idx.path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(KdlabError, match="schema version"):
        idx.rows()


def test_older_schema_gains_missing_columns(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / INDEX_FILE) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '0')")
        conn.execute('CREATE TABLE runs ("name" TEXT PRIMARY KEY, "command" TEXT, "status" TEXT, "started" TEXT)')
        conn.execute("INSERT INTO runs VALUES ('old', 'train', 'finished', '2025-01-01T00:00:00Z')")
    rows = RunIndex(tmp_path).rows()
    assert rows[0]["name"] == "old" and rows[0]["accuracy"] is None and set(rows[0]) == set(RunIndex.COLUMNS)
