"""The run store: a SQLite database (WAL mode) and a folder of result arrays under the data directory.

A run row keeps the request, the status, the timings and the finished RUN RESULT's skeleton
(its arrays are `.npy` files in `runs/<run_id>/`, see `results.py`); the events table keeps
every server-sent event of a run, so that a late subscriber, or one coming back after a
restart, reads the whole history. Writes are committed one by one: a finished run survives any
stop of the server.

Every method blocks (SQLite waits up to `BUSY_SECONDS` for a lock another process holds): the
run service calls them off the event loop. Writes share one connection, reads take one per
thread; WAL lets reads go on while a write waits. The data directory is claimed with a lock
file, so that a second server on it refuses to start rather than corrupt the first one's runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nncards.contract.run import RunStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    request TEXT NOT NULL,
    result TEXT
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    id INTEGER NOT NULL,
    event TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, id)
);
"""
BUSY_SECONDS = 2.0  # how long a write waits for a lock held by another process before it fails
FINISHED = tuple(status.value for status in RunStatus if status.finished)
FINISHED_SQL = "(" + ", ".join(f"'{status}'" for status in FINISHED) + ")"


class StoreError(Exception):
    """The store cannot be opened; the message is one sentence that says what to do."""


@dataclass(frozen=True)
class Event:
    id: int
    event: str
    data: dict


@dataclass(frozen=True)
class RunRow:
    run_id: str
    status: RunStatus
    created_at: float
    started_at: float | None
    finished_at: float | None
    result: dict | None  # the skeleton: arrays are references to files in `folder`
    folder: Path

    @property
    def finished(self) -> bool:
        return self.status.finished


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))  # NaN tokens allowed: request arrays may hold them


def _size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


class RunStore:
    def __init__(self, data_dir: Path):
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "runs.sqlite3"
        self.results = data_dir / "runs"
        self._lock_file = self._claim(data_dir)
        self._reads = threading.local()
        self._write_lock = threading.Lock()
        try:
            self._db = self._connect()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
            if "bytes" not in columns:  # a database of an earlier version
                self._db.execute("ALTER TABLE runs ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0")
        except sqlite3.DatabaseError as exc:
            self._lock_file.close()
            raise StoreError(f"The run database {self.path} cannot be read ({exc}): move it away to start with "
                             "an empty one, or restore it from a copy.") from None

    @staticmethod
    def _claim(data_dir: Path):
        lock = open(data_dir / "server.lock", "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip() or "unknown"
            lock.close()
            raise StoreError(f"Another nncards server (pid {owner}) uses the data directory {data_dir}: stop it, "
                             "or give this one another --data-dir.") from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        return lock

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_SECONDS)

    def close(self) -> None:
        with self._write_lock:
            self._db.close()
        self._lock_file.close()

    def _write(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        with self._write_lock:
            return self._db.execute(sql, parameters).fetchall()

    def _read(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        db = getattr(self._reads, "db", None)
        if db is None:
            db = self._reads.db = self._connect()
        return db.execute(sql, parameters).fetchall()

    def folder(self, run_id: str) -> Path:
        return self.results / run_id

    # -- runs ---------------------------------------------------------------------------------

    def create(self, run_id: str, request: dict) -> None:
        self._write("INSERT INTO runs (run_id, status, created_at, request) VALUES (?, 'queued', ?, ?)",
                    (run_id, time.time(), _dumps(request)))

    def request(self, run_id: str) -> dict:
        return json.loads(self._read("SELECT request FROM runs WHERE run_id = ?", (run_id,))[0][0])

    def started(self, run_id: str) -> None:
        self._write("UPDATE runs SET status = 'running', started_at = ? WHERE run_id = ?", (time.time(), run_id))

    def finish(self, run_id: str, result: dict) -> None:
        text = _dumps(result)
        self._write("UPDATE runs SET status = ?, finished_at = ?, result = ?, bytes = ? WHERE run_id = ?",
                    (result["status"], time.time(), text, len(text) + _size(self.folder(run_id)), run_id))

    def get(self, run_id: str) -> RunRow | None:
        rows = self._read("SELECT run_id, status, created_at, started_at, finished_at, result "
                          "FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        run_id, status, created, started, finished, result = rows[0]
        return RunRow(run_id, RunStatus(status), created, started, finished, json.loads(result) if result else None,
                      self.folder(run_id))

    def page(self, limit: int, offset: int) -> tuple[list[tuple], int]:
        rows = self._read("SELECT run_id, status, created_at, finished_at FROM runs "
                          "ORDER BY seq DESC LIMIT ? OFFSET ?", (limit, offset))
        total = self._read("SELECT COUNT(*) FROM runs")[0][0]
        return rows, total

    def unfinished(self) -> list[str]:
        return [r[0] for r in self._read(f"SELECT run_id FROM runs WHERE status NOT IN {FINISHED_SQL} ORDER BY seq")]

    def remove(self, run_id: str) -> None:
        """A run, its events and its arrays, gone."""
        with self._write_lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
                self._db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        shutil.rmtree(self.folder(run_id), ignore_errors=True)

    def expired(self, keep_runs: int, keep_bytes: int) -> list[str]:
        """The oldest finished runs past the retention limits (never the newest finished one)."""
        rows = self._read(f"SELECT run_id, bytes FROM runs WHERE status IN {FINISHED_SQL} ORDER BY seq DESC")
        kept = total = 0
        for index, (run_id, size) in enumerate(rows):
            if kept and (kept >= keep_runs or total + size > keep_bytes):
                return [run_id for run_id, _ in rows[index:]]  # this one and every older one
            kept += 1
            total += size
        return []

    # -- events -------------------------------------------------------------------------------

    def add_event(self, run_id: str, event: str, data: dict) -> Event:
        with self._write_lock:
            next_id = self._db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM events WHERE run_id = ?",
                                       (run_id,)).fetchone()[0]
            self._db.execute("INSERT INTO events (run_id, id, event, data) VALUES (?, ?, ?, ?)",
                             (run_id, next_id, event, _dumps(data)))
        return Event(next_id, event, data)

    def events(self, run_id: str, after: int = 0) -> list[Event]:
        rows = self._read("SELECT id, event, data FROM events WHERE run_id = ? AND id > ? ORDER BY id",
                          (run_id, after))
        return [Event(i, e, json.loads(d)) for i, e, d in rows]
