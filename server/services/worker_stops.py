"""Why a worker process of a service's pool stopped, and a pool started again when it stopped idle.

A worker that stops while at some work was stopped by the work or for want of memory: the kernel's
out-of-memory killer ends a process with SIGKILL, which says the work needs more memory than the
server has; any other signal (a segmentation fault, an abort in native code) or a non-zero exit is
the process crashing on what it was given. The worker's exit code tells the two apart. When one
worker of a pool stops, the pool ends the others with SIGTERM: their exit codes say nothing.
A worker that stopped while idle (its memory taken back, say) is no fault of the next work.
"""

from __future__ import annotations

import asyncio
import signal
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerStop:
    """How the worker of a broken pool ended: its exit code (None when none could be read)."""

    exit_code: int | None

    @property
    def out_of_memory(self) -> bool:
        """Killed by SIGKILL, the out-of-memory killer's signal; an end nothing is known of counts too."""
        return self.exit_code is None or self.exit_code == -signal.SIGKILL

    @property
    def cause(self) -> str:
        """The signal's name, or the exit code: `SIGSEGV`, `exit code 3`."""
        if self.exit_code is None:
            return "no exit code"
        if self.exit_code > 0:
            return f"exit code {self.exit_code}"
        try:
            return signal.Signals(-self.exit_code).name
        except ValueError:  # a signal Python has no name for
            return f"signal {-self.exit_code}"


# One reading per broken pool: every caller whose work it lost shares it (shutting a pool down makes it
# forget its processes, so a second reading would find none).
_STOPS: weakref.WeakKeyDictionary[ProcessPoolExecutor, asyncio.Task[WorkerStop]] = weakref.WeakKeyDictionary()


def why_stopped(broken: ProcessPoolExecutor) -> asyncio.Task[WorkerStop]:
    """Shuts a broken pool down and reads how its worker ended, once its own thread has reaped it
    (shutting down waits for that thread; the pool names its processes in `_processes` only)."""
    if broken not in _STOPS:
        _STOPS[broken] = asyncio.ensure_future(_exit_of(broken, list((broken._processes or {}).values())))
    return _STOPS[broken]


async def _exit_of(broken: ProcessPoolExecutor, workers: list) -> WorkerStop:
    await asyncio.to_thread(broken.shutdown, wait=True, cancel_futures=True)
    codes = [worker.exitcode for worker in workers if worker.exitcode]
    # the SIGTERM the pool sent the others, unless it is all there is
    return WorkerStop(next((code for code in codes if code != -signal.SIGTERM), codes[0] if codes else None))


def submit(executor: Callable[[], ProcessPoolExecutor], forget: Callable[[ProcessPoolExecutor], None],
           function, *arguments) -> tuple[ProcessPoolExecutor, Future]:
    """`function(*arguments)` submitted to the service's pool (`executor()`, which starts one when
    there is none), and that pool. When the pool's worker stopped while idle, the service is told
    to `forget` that pool, which is shut down, and the work goes to a new one."""
    pool = executor()
    try:
        return pool, pool.submit(function, *arguments)
    except BrokenProcessPool:
        forget(pool)
        why_stopped(pool)  # shuts it down; the work of a concurrent caller it lost may ask why
        pool = executor()
        return pool, pool.submit(function, *arguments)
