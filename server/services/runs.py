"""Runs as a service: queue, dispatch to an executor, events, cancellation, time limit.

Everything here runs on the event loop; the workers' messages arrive through it too, so the
bookkeeping needs no locks. Every change of a run is written to the store first and then
announced, so a subscriber that reads the store after an announcement never misses an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import datetime, timezone
from collections.abc import AsyncIterator, Callable

from nncards.contract.catalog import RunPage, RunSummary
from nncards.contract.errors import ErrorCode, NncardsError
from nncards.contract.events import DoneEvent, RunEvent, StatusEvent
from nncards.contract.limits import Limits
from nncards.contract.run import Run, RunResult, RunStatus
from nncards.execute.messages import RunFinished, RunProgress, RunStarted, WorkerMessage
from nncards.server.errors import not_found
from nncards.server.services.store import Event, RunRow, RunStore
from nncards.server.services.workers import Executor

log = logging.getLogger("nncards.server")

def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc).isoformat()


# How long DELETE waits for a running run to reach its next batch before its worker is killed.
CANCEL_GRACE_SECONDS = 10.0


ExecutorFactory = Callable[[Callable[[WorkerMessage], None], Callable[[str, str], None]], Executor]


class RunService:
    def __init__(self, store: RunStore, limits: Limits, executor: ExecutorFactory):
        """`executor` makes the executor from the service's two callbacks (messages, lost runs)."""
        self.store = store
        self.limits = limits
        self.executor = executor(self._on_message, self._on_lost)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._pending: dict[str, dict] = {}  # requests of queued runs, by run id
        self._news: dict[str, asyncio.Event] = {}
        self._deadlines: dict[str, asyncio.TimerHandle] = {}
        self._dispatcher: asyncio.Task | None = None

    def start(self) -> None:
        for run_id in self.store.unfinished():
            self._finish(run_id, RunResult.stopped(run_id, RunStatus.FAILED, ErrorCode.RUN_INTERRUPTED,
                                                "The server stopped while the run was queued or running."))
        self.executor.start()
        self._dispatcher = asyncio.create_task(self._dispatch(), name="nncards-dispatcher")

    async def close(self) -> None:
        if self._dispatcher:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        self.executor.close()

    # -- life of a run ------------------------------------------------------------------------

    async def check(self, run: Run) -> None:
        """Refuse a run the executor could never execute (e.g. more resources than any cluster node has)."""
        await asyncio.to_thread(self.executor.check, run)

    async def submit(self, request: dict) -> str:
        run_id = uuid.uuid4().hex
        await asyncio.to_thread(self.store.create, run_id, request)
        self._pending[run_id] = request
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
                self._finish(run_id, RunResult.stopped(run_id, RunStatus.FAILED, ErrorCode.RUN_FAILED,
                                                       f"The run could not be started: {type(exc).__name__}."))

    def _on_message(self, message: WorkerMessage) -> None:
        run_id = message.run_id
        match message:
            case RunStarted():
                self.store.started(run_id)
                self._emit(run_id, StatusEvent(status=RunStatus.RUNNING))
                self._deadlines[run_id] = asyncio.get_running_loop().call_later(
                    self.limits.max_run_seconds, self._time_out, run_id)
            case RunProgress(event=event):
                self._emit(run_id, event)
            case RunFinished(result=result):
                self._finish(run_id, result)

    def _on_lost(self, run_id: str, reason: str) -> None:
        self._finish(run_id, RunResult.stopped(run_id, RunStatus.FAILED, ErrorCode.RUN_FAILED, reason))

    def _time_out(self, run_id: str) -> None:
        if run_id not in self.executor.running():
            return
        self.executor.kill(run_id)
        seconds = f"{self.limits.max_run_seconds:g}"
        self._finish(run_id, RunResult.stopped(run_id, RunStatus.FAILED, ErrorCode.RUN_TIMEOUT,
                                               f"The run passed the time limit of {seconds} s and was stopped."))

    def _finish(self, run_id: str, result: RunResult) -> None:
        deadline = self._deadlines.pop(run_id, None)
        if deadline:
            deadline.cancel()
        self.store.finish(run_id, result.as_json())
        self._emit(run_id, StatusEvent(status=result.status))
        self._emit(run_id, DoneEvent(status=result.status))

    def _emit(self, run_id: str, event: RunEvent) -> None:
        self.store.add_event(run_id, event.type, event.data())
        news = self._news.pop(run_id, None)
        if news:
            news.set()

    # -- what clients ask ---------------------------------------------------------------------

    def get(self, run_id: str) -> RunRow:
        row = self.store.get(run_id)
        if row is None:
            raise not_found(f"run {run_id!r}")
        return row

    def result(self, run_id: str) -> RunResult:
        row = self.get(run_id)
        return RunResult.model_validate(row.result) if row.finished else RunResult.pending(row.run_id, row.status)

    def page(self, limit: int, offset: int) -> RunPage:
        """The runs in the store, newest first."""
        rows, total = self.store.page(limit, offset)
        return RunPage(runs=[RunSummary(run_id=r, status=s, created_at=_iso(c), finished_at=_iso(f))
                             for r, s, c, f in rows], total=total)

    async def _news_of(self, run_id: str, timeout: float) -> None:
        news = self._news.setdefault(run_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(news.wait(), timeout)

    async def wait(self, run_id: str, seconds: float) -> bool:
        """Wait until the run has finished, at most `seconds`; whether it has."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self.get(run_id).finished:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            await self._news_of(run_id, remaining)
        return True

    async def cancel(self, run_id: str) -> RunResult:
        if self.get(run_id).finished:
            raise self._already_finished(run_id)
        if self._pending.pop(run_id, None) is not None:
            self._finish(run_id, RunResult.stopped(run_id, RunStatus.CANCELLED, ErrorCode.RUN_CANCELLED,
                                                "The run was cancelled before it started."))
        else:
            await self._stop_running(run_id)
        row = self.get(run_id)
        if row.status != RunStatus.CANCELLED:  # it finished on its own before reaching a batch end
            raise self._already_finished(run_id)
        return RunResult.model_validate(row.result)

    def _already_finished(self, run_id: str) -> NncardsError:
        return NncardsError("run_finished", f"The run has already finished with status "
                            f"{self.get(run_id).status!r}.")

    async def _stop_running(self, run_id: str) -> None:
        self.executor.cancel(run_id)
        if await self.wait(run_id, CANCEL_GRACE_SECONDS):
            return
        self.executor.kill(run_id)
        self._finish(run_id, RunResult.stopped(run_id, RunStatus.CANCELLED, ErrorCode.RUN_CANCELLED,
                                            "The run was cancelled and its worker stopped."))

    async def events(self, run_id: str, after: int) -> AsyncIterator[Event]:
        """Every event after the id `after`, then the live ones, until the run is done."""
        while True:
            events = self.store.events(run_id, after)
            for event in events:
                yield event
                after = event.id
                if event.event == "done":
                    return
            if events:
                continue  # more may have come while the subscriber read these
            if self.get(run_id).finished:
                return  # resumed after the last event
            await self._news_of(run_id, 30.0)
