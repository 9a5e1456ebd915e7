"""The Ray executor: runs as tasks on a Ray cluster, behind the run service's `Executor` interface.

The cluster side lives in `nncards.execute.ray_executor` (`RayRuns`); this adapter brings its
messages, which arrive on a relay thread, onto the event loop, and holds at most `max_runs`
runs on the cluster at once (Ray's own scheduler queues those waiting for a node).
"""

from __future__ import annotations

import asyncio

from nncards.contract.limits import Limits
from nncards.contract.run import Run
from nncards.execute.messages import RunFinished, WorkerMessage
from nncards.execute.ray_executor import RayRuns
from nncards.server.services.request_arrays import StoredRequest
from nncards.server.services.workers import Executor, OnLost, OnMessage


class RayExecutor(Executor):
    def __init__(self, on_message: OnMessage, on_lost: OnLost, *, address: str, limits: Limits, max_runs: int):
        super().__init__(on_message, on_lost)
        self.max_runs = max_runs
        self.runs = RayRuns(address, self._from_relay, limits)
        self._live: set[str] = set()  # runs on the cluster that the service still hears about
        self._freed = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.runs.start()

    def check(self, request: Run) -> None:
        self.runs.check(request)

    async def capacity(self) -> None:
        while len(self._live) >= self.max_runs:
            self._freed.clear()
            await self._freed.wait()

    async def submit(self, run_id: str, request: StoredRequest) -> None:
        self._live.add(run_id)
        # Putting a large request in the cluster's object store takes a while: not on the event loop.
        await asyncio.to_thread(self.runs.submit, run_id, request.loaded())

    def cancel(self, run_id: str) -> None:
        self.runs.cancel(run_id)

    def kill(self, run_id: str) -> None:
        self._end(run_id)
        self.runs.kill(run_id)

    def running(self) -> set[str]:
        return set(self._live)

    def close(self) -> None:
        self._live.clear()
        self.runs.close()

    def _from_relay(self, message: WorkerMessage) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._received, message)

    def _received(self, message: WorkerMessage) -> None:
        if message.run_id not in self._live:
            return  # a late word from a run the server already ended
        if isinstance(message, RunFinished):
            self._end(message.run_id)
        self.on_message(message)

    def _end(self, run_id: str) -> None:
        self._live.discard(run_id)
        self._freed.set()
