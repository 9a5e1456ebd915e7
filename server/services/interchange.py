"""Models in and out for the server: imports and `.keras` exports in a worker process.

Reading a model's configuration asks Keras for its classes' defaults, and reading weights or
writing a `.keras` file builds the model: both need TensorFlow, which the server process never
imports. So they run in one spawned worker process, started on the first import or download,
stopped once idle (`--worker-idle-seconds`) and with the server.
What crosses back is plain data: the GRAPH or RUN, the file's bytes, or an error's envelope.
A file can also stop the worker: a corrupt or crafted HDF5 file can crash the HDF5 library (a
segmentation fault or an abort, a signal the worker cannot catch), which is the file's fault; the
kernel's out-of-memory killer ends it with SIGKILL instead, which says the model needs more memory
than the server has. The worker's exit code tells the two apart.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from nncards.contract.errors import ErrorCode, NncardsError, Problem
from nncards.execute.lifeline import die_with_parent
from nncards.interchange.export import to_keras
from nncards.interchange.keras_import import import_model
from nncards.server.services.results import with_arrays
from nncards.server.services.validation import SPAWN, start_tensorflow
from nncards.server.services.worker_stops import submit, why_stopped


def _start_worker(server_pid: int) -> None:
    die_with_parent(server_pid)
    start_tensorflow(1)


def _out_of_memory(how: str) -> NncardsError:
    return NncardsError(ErrorCode.TOO_LARGE, f"The model needs more memory than the server has: {how}.")


def _import_in_worker(data: bytes, with_weights: bool, weights_file: bytes | None) -> tuple[str, dict]:
    try:
        return "done", import_model(data, with_weights, weights_file)
    except NncardsError as error:
        return "refused", error.body()
    except MemoryError:
        return "refused", _out_of_memory("reading it ran out of memory").body()
    except Exception as exc:  # a file shaped in a way the importer did not foresee: still the sender's
        return "refused", {"code": ErrorCode.BAD_REQUEST, "message": f"The model file cannot be read: "
                           f"{type(exc).__name__}: {str(exc)[:200]}"}


def _export_in_worker(document: dict, arrays_folder: Path) -> tuple[str, bytes | dict]:
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.keras"
            to_keras(with_arrays(document, arrays_folder), path)
            return "done", path.read_bytes()
    except NncardsError as error:
        return "refused", error.body()
    except MemoryError:
        return "refused", _out_of_memory("writing it ran out of memory").body()


def _raise(body: dict):
    problems = [Problem.model_validate(p) for p in body.get("errors") or []] or None
    raise NncardsError(ErrorCode(body["code"]), body["message"], problems)


class WorkerCrashed(Exception):
    """The worker stopped at the work by a cause of its own (a signal other than SIGKILL, or an
    exit), not for want of memory: what it was given made it crash."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


class InterchangeService:
    def __init__(self, idle_seconds: float = 0):
        """`idle_seconds`: how long the worker may wait for work before it stops (0: forever)."""
        self.idle_seconds = idle_seconds
        self._pool: ProcessPoolExecutor | None = None
        self._busy = 0
        self._idle_timer: asyncio.TimerHandle | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=SPAWN, initializer=_start_worker, initargs=(os.getpid(),))
        return self._pool

    def _stop_idle(self) -> None:
        if not self._busy:
            self.close()

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None

    async def _call(self, function, *arguments):
        """`function(*arguments)` in the worker; `WorkerCrashed` when it crashed the worker."""
        self._busy += 1
        try:
            pool, future = submit(self._executor, self._discard, function, *arguments)
            try:
                outcome, value = await asyncio.wrap_future(future)
            except BrokenProcessPool:
                self._discard(pool)
                stop = await why_stopped(pool)
                if stop.out_of_memory:
                    raise _out_of_memory("the process at it was killed (SIGKILL, the out-of-memory "
                                         "killer's signal)") from None
                raise WorkerCrashed(stop.cause) from None
        finally:
            self._busy -= 1
            if self._idle_timer:
                self._idle_timer.cancel()
            if self.idle_seconds:
                self._idle_timer = asyncio.get_running_loop().call_later(self.idle_seconds, self._stop_idle)
        if outcome == "refused":
            _raise(value)
        return value

    async def import_model(self, data: bytes, with_weights: bool, weights_file: bytes | None = None) -> dict:
        """The GRAPH (or with weights the RUN) of a `.keras` file, Keras 2 `.h5` file or Keras JSON
        config; `weights_file`, a Keras 2 HDF5 weights file, gives a JSON config's weights."""
        try:
            return await self._call(_import_in_worker, data, with_weights, weights_file)
        except WorkerCrashed as crash:
            raise NncardsError(ErrorCode.BAD_REQUEST, f"The model file crashed the process reading it ({crash.cause}): "
                               "it is corrupt, or crafted so that the HDF5 or Keras reader fails on it; "
                               "nothing of it was imported.") from None

    async def keras_file(self, document: dict, arrays_folder: Path) -> bytes:
        """The `.keras` file of a GRAPH or a RUN (with its weights, arrays referring to files in
        `arrays_folder` as a stored RUN RESULT's do)."""
        try:
            return await self._call(_export_in_worker, document, arrays_folder)
        except WorkerCrashed as crash:
            raise NncardsError(ErrorCode.EXPORT_UNSUPPORTED, "Writing the model's .keras file crashed the "
                               f"interchange process ({crash.cause}).") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
