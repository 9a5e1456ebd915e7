"""The run store: one SQLite database (WAL mode) under the data directory.

A run row keeps the request, the status, the timings and the finished RUN RESULT; the events
table keeps every server-sent event of a run, so that a late subscriber, or one coming back
after a restart, reads the whole history. Writes are committed one by one: a finished run
survives any stop of the server.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Event:
    id: int
    event: str
    data: dict


@dataclass(frozen=True)
class RunRow:
    run_id: str
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    result: dict | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))  # NaN tokens allowed: request arrays may hold them


class RunStore:
    def __init__(self, data_dir: Path):
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "runs.sqlite3"
        # One connection shared by the event loop and the helper threads, one statement at a time.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _execute(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    # -- runs ---------------------------------------------------------------------------------

    def create(self, run_id: str, request: dict) -> None:
        self._execute("INSERT INTO runs (run_id, status, created_at, request) VALUES (?, 'queued', ?, ?)",
                      (run_id, time.time(), _dumps(request)))

    def request(self, run_id: str) -> dict:
        return json.loads(self._execute("SELECT request FROM runs WHERE run_id = ?", (run_id,))[0][0])

    def started(self, run_id: str) -> None:
        self._execute("UPDATE runs SET status = 'running', started_at = ? WHERE run_id = ?", (time.time(), run_id))

    def finish(self, run_id: str, result: dict) -> None:
        self._execute("UPDATE runs SET status = ?, finished_at = ?, result = ? WHERE run_id = ?",
                      (result["status"], time.time(), _dumps(result), run_id))

    def get(self, run_id: str) -> RunRow | None:
        rows = self._execute("SELECT run_id, status, created_at, started_at, finished_at, result "
                             "FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        run_id, status, created, started, finished, result = rows[0]
        return RunRow(run_id, status, created, started, finished, json.loads(result) if result else None)

    def page(self, limit: int, offset: int) -> tuple[list[tuple], int]:
        rows = self._execute("SELECT run_id, status, created_at, finished_at FROM runs "
                             "ORDER BY seq DESC LIMIT ? OFFSET ?", (limit, offset))
        total = self._execute("SELECT COUNT(*) FROM runs")[0][0]
        return rows, total

    def unfinished(self) -> list[str]:
        return [r[0] for r in self._execute("SELECT run_id FROM runs WHERE status IN ('queued', 'running') "
                                            "ORDER BY seq")]

    # -- events -------------------------------------------------------------------------------

    def add_event(self, run_id: str, event: str, data: dict) -> Event:
        with self._lock:
            next_id = self._db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM events WHERE run_id = ?",
                                       (run_id,)).fetchone()[0]
            self._db.execute("INSERT INTO events (run_id, id, event, data) VALUES (?, ?, ?, ?)",
                             (run_id, next_id, event, _dumps(data)))
        return Event(next_id, event, data)

    def events(self, run_id: str, after: int = 0) -> list[Event]:
        rows = self._execute("SELECT id, event, data FROM events WHERE run_id = ? AND id > ? ORDER BY id",
                             (run_id, after))
        return [Event(i, e, json.loads(d)) for i, e, d in rows]
