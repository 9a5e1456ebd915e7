"""Runs as a service: a bounded queue, dispatch to an executor, events, cancellation, time limit, retention.

The bookkeeping happens on the event loop (the executor's messages arrive through it too), so
it needs no locks; the store is only ever called off the loop. Changes of a run are written by
one journal task, in the order they happened: a change is written first and announced after, so
a subscriber that reads the store after an announcement never misses an event. A write that
fails (another process holds the database, the disk is full) is tried again for
`STORAGE_PATIENCE_SECONDS`; a run whose end still cannot be written ends all the same, as
`failed` with `storage_failed`, kept in memory and written once the store takes writes again.
Whatever happens after a run starts, it ends, and its executor slot goes to the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import nncards
from nncards.contract.catalog import Health, HealthStatus, RunPage, RunSummary
from nncards.contract.errors import ErrorCode, NncardsError
from nncards.contract.events import DoneEvent, EventType, RunEvent, StatusEvent
from nncards.contract.limits import Limits
from nncards.contract.run import Run, RunResult, RunStatus
from nncards.execute.messages import RunFinished, RunProgress, RunStarted, WorkerMessage
from nncards.server.errors import not_found
from nncards.server.services.results import write_arrays
from nncards.server.services.request_arrays import StoredRequest
from nncards.server.services.store import Event, RunRow, RunStore
from nncards.server.services.workers import Executor

log = logging.getLogger("nncards.server")

CANCEL_GRACE_SECONDS = 10.0  # how long DELETE waits for a running run's next batch before killing it
STORAGE_PATIENCE_SECONDS = 5.0  # how long a failing write is tried again (once only while the store is failing)
STORAGE_RETRY_SECONDS = 0.5
QUEUE_RETRY_AFTER_SECONDS = 5

ExecutorFactory = Callable[[Callable[[WorkerMessage], None], Callable[[str, str], None]], Executor]


class Unavailable(NncardsError):
    """The service cannot take this now: answered with Retry-After (429 for a full queue, else 503)."""

    def __init__(self, code: ErrorCode, message: str, retry_after: int):
        super().__init__(code, message)
        self.status = 429 if code == ErrorCode.QUEUE_FULL else 503
        self.headers = {"Retry-After": str(retry_after)}


@dataclass(frozen=True)
class Retention:
    keep_runs: int
    keep_bytes: int


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc).isoformat()


class RunService:
    def __init__(self, store: RunStore, limits: Limits, executor: ExecutorFactory, *, max_queued: int,
                 retention: Retention, max_result_elements: int):
        """`executor` makes the executor from the service's two callbacks (messages, lost runs)."""
        self.store = store
        self.limits = limits
        self.max_queued = max_queued
        self.retention = retention
        self.max_result_elements = max_result_elements
        self.executor = executor(self._on_message, self._on_lost)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._pending: dict[str, StoredRequest] = {}  # requests of queued runs, by run id
        self._active_since: dict[str, float] = {}  # queued and running runs: when they were created
        self._ended: dict[str, RunRow] = {}  # finished runs whose end is not written yet
        self._news: dict[str, asyncio.Event] = {}
        self._deadlines: dict[str, asyncio.TimerHandle] = {}
        self._journal: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()
        self.storage_problem: str | None = None

    async def start(self) -> None:
        for run_id in await asyncio.to_thread(self.store.unfinished):
            self._end(run_id, RunResult.stopped(run_id, RunStatus.FAILED, ErrorCode.RUN_INTERRUPTED,
                                                "The server stopped while the run was queued or running."))
        self.executor.start()
        self._tasks = [asyncio.create_task(self._dispatch(), name="nncards-dispatcher"),
                       asyncio.create_task(self._write_journal(), name="nncards-journal")]

    async def close(self) -> None:
        for task in [*self._tasks, *self._background]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.executor.close()

    # -- writing: one journal, in order, off the loop -----------------------------------------

    async def _write_journal(self) -> None:
        while True:
            write = await self._journal.get()
            try:
                await write()
            except Exception:  # a fault in one change must not stop the writing of every later one
                log.exception("a change of a run could not be written")

    async def _stored(self, what: str, call: Callable, *args) -> bool:
        """Run a store call on a thread, trying again while it fails; whether it went through.

        While the store is known to be failing, a write is tried once: a queue of writes each
        waiting out its patience would hold every later change of every run back."""
        deadline = time.monotonic() + (0 if self.storage_problem else STORAGE_PATIENCE_SECONDS)
        while True:
            try:
                await asyncio.to_thread(call, *args)
                self.storage_problem = None
                return True
            except (sqlite3.Error, OSError) as exc:
                self.storage_problem = f"The run database cannot be written ({exc})."
                if time.monotonic() >= deadline:
                    log.error("could not write %s: %s", what, exc)
                    return False
                await asyncio.sleep(STORAGE_RETRY_SECONDS)

    def _emit(self, run_id: str, event: RunEvent) -> None:
        async def write() -> None:
            if self.storage_problem and event.type not in (EventType.STATUS, EventType.DONE):
                # Progress while the store fails is dropped, not queued: the run's end must not
                # wait behind a failing write per epoch. Status and done events are tried.
                log.warning("dropped a %s event of run %s: %s", event.type, run_id, self.storage_problem)
                return
            if await self._stored(f"a {event.type} event of run {run_id}", self.store.add_event, run_id,
                                  event.type, event.data()):
                self._announce(run_id)
        self._journal.put_nowait(write)

    def _announce(self, run_id: str) -> None:
        news = self._news.pop(run_id, None)
        if news:
            news.set()

    def _end(self, run_id: str, result: RunResult) -> None:
        """The run is over: known at once to readers, written (then announced) by the journal."""
        deadline = self._deadlines.pop(run_id, None)
        if deadline:
            deadline.cancel()
        created = self._active_since.pop(run_id, time.time())
        self._ended[run_id] = RunRow(run_id, result.status, created, None, time.time(), result.as_json(),
                                     self.store.folder(run_id))
        self._emit(run_id, StatusEvent(status=result.status))

        stored = []

        async def write() -> None:
            if await self._stored(f"the end of run {run_id}", self.store.finish, run_id, result.as_json()):
                stored.append(True)
            else:
                await self._keep_failed(run_id, result)

        async def settle() -> None:  # after the done event: a reader of the store now sees it all
            if stored:
                self._ended.pop(run_id, None)
                self._announce(run_id)
                await self._apply_retention()
        self._journal.put_nowait(write)
        self._emit(run_id, DoneEvent(status=result.status))
        self._journal.put_nowait(settle)

    async def _keep_failed(self, run_id: str, result: RunResult) -> None:
        """The run's end could not be written: it ends as storage_failed, written when the store recovers."""
        await asyncio.to_thread(shutil.rmtree, self.store.folder(run_id), True)
        failed = RunResult.stopped(run_id, RunStatus.FAILED, ErrorCode.STORAGE_FAILED,
                                   f"The run ended ({result.status}) but its result could not be stored: "
                                   f"{self.storage_problem}")
        self._ended[run_id] = replace(self._ended[run_id], status=failed.status, result=failed.as_json())
        self._announce(run_id)

        async def retry() -> None:
            while not await self._stored(f"the failure of run {run_id}", self.store.finish, run_id, failed.as_json()):
                await asyncio.sleep(STORAGE_RETRY_SECONDS)
            self._ended.pop(run_id, None)
        self._keep(asyncio.create_task(retry(), name=f"nncards-retry-{run_id}"))

    async def _apply_retention(self) -> None:
        expired = await asyncio.to_thread(self.store.expired, self.retention.keep_runs, self.retention.keep_bytes)
        for run_id in expired:
            await self._stored(f"the removal of run {run_id}", self.store.remove, run_id)

    # -- life of a run ------------------------------------------------------------------------

    async def check(self, run: Run) -> None:
        """Refuse a run the executor could never execute (e.g. more resources than any cluster node has)."""
        await asyncio.to_thread(self.executor.check, run)

    def prepare(self) -> None:
        """A run request is arriving (its body is read, parsed, then checked): the executor may get ready
        for it meanwhile."""
        self.executor.prepare()

    async def submit(self, run: Run) -> str:
        """Queue a checked request, its arrays (decoded) set aside as files in the run's folder."""
        if len(self._pending) >= self.max_queued:
            raise Unavailable(ErrorCode.QUEUE_FULL, f"{len(self._pending)} runs are already waiting, the most "
                              "this server queues; try again later.", QUEUE_RETRY_AFTER_SECONDS)
        run_id = uuid.uuid4().hex
        self.executor.build_ahead(run)  # the model is built while the arrays are stored
        try:
            # The arrays go to the run's folder (retention and DELETE remove it whole), the rest to the database.
            request = await asyncio.to_thread(StoredRequest.set_aside, run, self.store.folder(run_id) / "request")
            await asyncio.to_thread(self.store.create, run_id, request.run.model_dump(mode="json", by_alias=True))
        except (sqlite3.Error, OSError) as exc:
            self.storage_problem = f"The run database cannot be written ({exc})."
            raise Unavailable(ErrorCode.STORAGE_FAILED, f"The run could not be stored ({exc}); try again later.",
                              QUEUE_RETRY_AFTER_SECONDS) from None
        self._pending[run_id] = request
        self._active_since[run_id] = time.time()
        self._emit(run_id, StatusEvent(status=RunStatus.QUEUED))
        self._queue.put_nowait(run_id)
        return run_id

    async def _dispatch(self) -> None:
        while True:
            run_id = await self._queue.get()
            if run_id not in self._pending:
                continue  # cancelled while queued
            await self.executor.capacity()
            request = self._pending.pop(run_id, None)
            if request is None:
                continue  # cancelled while waiting for capacity
            try:
                await self.executor.submit(run_id, request)
            except Exception as exc:  # the request could not be sent: fail this run, keep dispatching
                log.exception("could not hand run %s to the executor", run_id)
                self.executor.kill(run_id)
                self._end(run_id, RunResult.stopped(run_id, RunStatus.FAILED, ErrorCode.RUN_FAILED,
                                                    f"The run could not be started: {type(exc).__name__}."))

    def _on_message(self, message: WorkerMessage) -> None:
        run_id = message.run_id
        match message:
            case RunStarted():
                self._journal.put_nowait(lambda: self._stored(f"the start of run {run_id}", self.store.started, run_id))
                self._emit(run_id, StatusEvent(status=RunStatus.RUNNING))
                self._deadlines[run_id] = asyncio.get_running_loop().call_later(
                    self.limits.max_run_seconds, self._time_out, run_id)
            case RunProgress(event=event):
                self._emit(run_id, event)
            case RunFinished(result=result):
                self._keep(asyncio.create_task(self._finished(run_id, result), name=f"nncards-finish-{run_id}"))

    async def _finished(self, run_id: str, result: RunResult) -> None:
        """A result whose arrays came inline (from an executor that writes no files) has them written
        here, within the same element limit; one whose arrays are files already passes unchanged."""
        try:
            result, _ = await asyncio.to_thread(write_arrays, result, self.store.folder(run_id),
                                                self.max_result_elements)
        except Exception as exc:  # whatever goes wrong here, the run still ends
            log.exception("could not store the result of run %s", run_id)
            result = RunResult.stopped(run_id, RunStatus.FAILED, ErrorCode.STORAGE_FAILED,
                                       f"The run's result could not be stored: {type(exc).__name__}.")
        self._end(run_id, result)

    def _keep(self, task: asyncio.Task) -> None:
        """Hold a background task until it is done (the loop keeps only weak references)."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_lost(self, run_id: str, reason: str) -> None:
        self._end(run_id, RunResult.stopped(run_id, RunStatus.FAILED, ErrorCode.RUN_FAILED, reason))

    def _time_out(self, run_id: str) -> None:
        if run_id not in self.executor.running():
            return
        self.executor.kill(run_id)
        seconds = f"{self.limits.max_run_seconds:g}"
        self._end(run_id, RunResult.stopped(run_id, RunStatus.FAILED, ErrorCode.RUN_TIMEOUT,
                                            f"The run passed the time limit of {seconds} s and was stopped."))

    # -- what clients ask ---------------------------------------------------------------------

    async def get(self, run_id: str) -> RunRow:
        row = self._ended.get(run_id) or await asyncio.to_thread(self.store.get, run_id)
        if row is None:
            raise not_found(f"run {run_id!r}")
        return row

    async def trained(self, run_id: str) -> tuple[dict, Path]:
        """A finished run's graph with the weights its layers ended with (a RUN without steps,
        whose model is the run's trained model; arrays as references to files in the folder
        that comes with it)."""
        row = await self.get(run_id)
        if not row.finished:
            raise NncardsError(ErrorCode.RUN_NOT_FINISHED, f"Run {run_id} is {row.status}; its model can be "
                               "downloaded once it has finished.")
        request = await asyncio.to_thread(self.store.request, run_id)
        layers = (row.result or {}).get("layers") or {}
        return {"graph": request["graph"], "seed": request.get("seed", 0),
                "weights": {node: layer["weights"] for node, layer in layers.items()}}, row.folder

    async def result(self, run_id: str) -> RunRow:
        """The run's row with its RUN RESULT (arrays as file references); its status alone while unfinished."""
        row = await self.get(run_id)
        return row if row.finished else replace(row, result=RunResult.pending(row.run_id, row.status).as_json())

    async def page(self, limit: int, offset: int) -> RunPage:
        """The runs in the store, newest first."""
        rows, total = await asyncio.to_thread(self.store.page, limit, offset)
        return RunPage(runs=[RunSummary(run_id=r, status=s, created_at=_iso(c), finished_at=_iso(f))
                             for r, s, c, f in rows], total=total)

    async def _news_of(self, run_id: str, timeout: float) -> None:
        news = self._news.setdefault(run_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(news.wait(), timeout)

    async def wait(self, run_id: str, seconds: float) -> bool:
        """Wait until the run has finished, at most `seconds`; whether it has."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not (await self.get(run_id)).finished:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            await self._news_of(run_id, remaining)
        return True

    async def delete(self, run_id: str) -> RunRow | None:
        """Cancel an active run (its row, cancelled); remove a finished one and its arrays (None)."""
        row = await self.get(run_id)
        if row.finished:
            self._ended.pop(run_id, None)
            if not await self._stored(f"the removal of run {run_id}", self.store.remove, run_id):
                raise Unavailable(ErrorCode.STORAGE_FAILED, "The run could not be removed: the run database "
                                  "cannot be written; try again later.", QUEUE_RETRY_AFTER_SECONDS)
            return None
        if self._pending.pop(run_id, None) is not None:
            self._end(run_id, RunResult.stopped(run_id, RunStatus.CANCELLED, ErrorCode.RUN_CANCELLED,
                                                "The run was cancelled before it started."))
        else:
            await self._stop_running(run_id)
        row = await self.get(run_id)
        if row.status != RunStatus.CANCELLED:  # it finished on its own before reaching a batch end
            raise NncardsError(ErrorCode.RUN_FINISHED, f"The run had already finished with status "
                               f"{row.status.value!r}.")
        return row

    async def _stop_running(self, run_id: str) -> None:
        self.executor.cancel(run_id)
        if await self.wait(run_id, CANCEL_GRACE_SECONDS):
            return
        self.executor.kill(run_id)
        self._end(run_id, RunResult.stopped(run_id, RunStatus.CANCELLED, ErrorCode.RUN_CANCELLED,
                                            "The run was cancelled and its worker stopped."))

    async def events(self, run_id: str, after: int) -> AsyncIterator[Event]:
        """Every event after the id `after`, then the live ones, until the run is done."""
        while True:
            events = await asyncio.to_thread(self.store.events, run_id, after)
            for event in events:
                yield event
                after = event.id
                if event.event == "done":
                    return
            if events:
                continue  # more may have come while the subscriber read these
            if (await self.get(run_id)).finished and run_id not in self._ended:
                # Every event is written now, but the last ones may have been written while the
                # store was asked whether the run had finished: read once more before ending.
                for event in await asyncio.to_thread(self.store.events, run_id, after):
                    yield event
                return
            await self._news_of(run_id, 30.0)

    def health(self) -> Health:
        """Queue depth, runs in progress, the age of the oldest; unavailable when runs cannot progress."""
        now = time.time()
        oldest = min(self._active_since.values(), default=None)
        problem = self.storage_problem
        if any(task.done() for task in self._tasks):
            problem = "The run dispatcher stopped; restart the server."
        return Health(status=HealthStatus.UNAVAILABLE if problem else HealthStatus.OK, version=nncards.__version__,
                      queued=len(self._pending), running=len(self.executor.running()),
                      oldest_run_seconds=None if oldest is None else round(now - oldest, 3), problem=problem)

