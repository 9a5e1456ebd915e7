"""Worker processes that execute runs, one run at a time each.

Workers are spawned (never forked: TensorFlow's threads do not survive a fork), cap
TensorFlow's thread pools so that several workers share the cores, and import TensorFlow as
soon as they start. They run at a lower priority (niceness) than the server: training takes
the cores the server leaves idle, and a request or validation never queues behind it. A worker talks to the server over a pipe: the server sends a job, the
worker says when it starts it (a fresh worker finishes importing TensorFlow first), sends
events while the run goes and the RUN RESULT at its end. A shared flag asks
the current run to stop at its next batch; a worker that must stop at once (time limit) is
killed and replaced.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from typing import Any

from nncards.contract.events import RunEvent
from nncards.contract.limits import Limits
from nncards.execute.messages import RunFinished, RunProgress, RunStarted, WorkerMessage
from nncards.execute.options import RunOptions

SPAWN = multiprocessing.get_context("spawn")
log = logging.getLogger("nncards.server")


class PipeObserver:
    """A run's observer inside a worker: forwards its events, reads the cancel flag."""

    def __init__(self, connection, run_id: str, cancel):
        self.connection, self.run_id, self.cancel = connection, run_id, cancel

    def emit(self, event: RunEvent) -> None:
        self.connection.send(RunProgress(run_id=self.run_id, event=event))

    def cancelled(self) -> bool:
        return self.cancel.is_set()


def worker_main(connection, cancel, threads: int, niceness: int) -> None:
    """Entry point of a worker process."""
    os.nice(niceness)
    from nncards.server.validator import start_tensorflow

    start_tensorflow(threads)
    from nncards.execute.entry import execute

    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):
            return
        run_id, request, limits = job
        connection.send(RunStarted(run_id=run_id))
        options = RunOptions(limits=limits, observer=PipeObserver(connection, run_id, cancel), run_id=run_id,
                             as_base64=True)
        connection.send(RunFinished(run_id=run_id, result=execute(request, options)))


class Worker:
    _numbers = itertools.count(1)

    def __init__(self, threads: int, niceness: int, on_message: Callable[[Worker, WorkerMessage], None],
                 on_exit: Callable[[Worker], None], loop: asyncio.AbstractEventLoop):
        self.name = f"nncards-worker-{next(self._numbers)}"
        self.cancel = SPAWN.Event()
        self.connection, child = SPAWN.Pipe()
        self.process = SPAWN.Process(target=worker_main, args=(child, self.cancel, threads, niceness), name=self.name,
                                     daemon=True)
        self.process.start()
        child.close()
        self.run_id: str | None = None
        self.retired = False
        self._loop, self._on_message, self._on_exit = loop, on_message, on_exit
        threading.Thread(target=self._listen, name=f"{self.name}-listener", daemon=True).start()

    def _listen(self) -> None:
        while True:
            try:
                message = self.connection.recv()
            except (EOFError, OSError):
                break
            self._loop.call_soon_threadsafe(self._on_message, self, message)
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._on_exit, self)

    async def start(self, run_id: str, request: dict, limits: Limits) -> None:
        self.run_id = run_id
        self.cancel.clear()
        # Pickling a large request takes a while: not on the event loop.
        await asyncio.to_thread(self.connection.send, (run_id, request, limits))

    def stop(self) -> None:
        """Kill the process at once; its run, if any, is the caller's to report."""
        self.retired = True
        self.process.kill()
        self.process.join(5)
        self.connection.close()


class WorkerPool:
    """A fixed number of workers; `acquire` waits for an idle one."""

    def __init__(self, size: int, threads: int, niceness: int, on_message: Callable[[Worker, WorkerMessage], None],
                 on_crash: Callable[[Worker], None]):
        self.size, self.threads, self.niceness = size, threads, niceness
        self._on_message, self._on_crash = on_message, on_crash
        self._idle: asyncio.Queue[Worker] = asyncio.Queue()
        self.workers: list[Worker] = []

    def start(self) -> None:
        for _ in range(self.size):
            self._idle.put_nowait(self._spawn())

    def _spawn(self) -> Worker:
        worker = Worker(self.threads, self.niceness, self._on_message, self._exited, asyncio.get_running_loop())
        self.workers.append(worker)
        return worker

    def _exited(self, worker: Worker) -> None:
        if worker.retired:
            return
        log.error("%s stopped unexpectedly (exit code %s)", worker.name, worker.process.exitcode)
        self._on_crash(worker)
        self.replace(worker)

    async def acquire(self) -> Worker:
        while True:
            worker = await self._idle.get()
            if not worker.retired:  # one that died while idle is skipped; its successor is queued
                return worker

    def release(self, worker: Worker) -> None:
        worker.run_id = None
        if not worker.retired:
            self._idle.put_nowait(worker)

    def replace(self, worker: Worker) -> None:
        """Kill a worker (if still alive) and put a fresh one in its place."""
        if not worker.retired:
            worker.stop()
        self.workers.remove(worker)
        self._idle.put_nowait(self._spawn())

    def busy_with(self, run_id: str) -> Worker | None:
        return next((w for w in self.workers if w.run_id == run_id and not w.retired), None)

    def close(self) -> None:
        for worker in list(self.workers):
            worker.stop()
        self.workers.clear()
