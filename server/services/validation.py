"""Graph validation for the server: in worker processes, TensorFlow warmed early, results cached.

Keras' symbolic build is pure Python and holds the GIL for tens of milliseconds per graph: on a
thread of the server it would stall the event loop, and every catalogue request with it. So
validations run in spawned worker processes (never forked: TensorFlow's threads do not survive
a fork), which import TensorFlow as they start: with the first validation or run request (as it
arrives, before its body is read), or at the warm-up. A run's graph, though, is validated by the
run worker that will run it when these workers are not running (`validate`'s `elsewhere`): a cold
run then imports TensorFlow once, not in two processes at once on the same cores.
They stop after `idle_seconds` without a validation, giving TensorFlow's memory back, and the
next validation starts them again. The server process itself never imports TensorFlow.
A worker that dies at a validation is replaced and the validation tried once more (a pool's work
is lost with any of its workers: another graph may have been the cause). A graph that stops it
every time is answered by how the worker ended (`worker_stops`): killed by SIGKILL, the
out-of-memory killer's signal, or out of memory inside it, the graph needs more memory than the
server has (`too_large`); crashed (a segmentation fault, an abort in native code), the graph cannot
be built (`param_invalid`, as when Keras refuses a node, and `graph_invalid` for a run). A worker
that died while idle is replaced without counting against the next validation.
Results are cached in the server under a hash of the graph's content; node positions are left
out of the hash because they do not change the result.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import multiprocessing
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from nncards.contract.catalog import ValidationResult
from nncards.contract.graph import Graph
from nncards.contract.limits import Limits
from nncards.contract.errors import ErrorCode, Problem
from nncards.build.validation import Validator, validate
from nncards.execute.lifeline import die_with_parent
from nncards.server.services.worker_stops import WorkerStop, submit, why_stopped

SPAWN = multiprocessing.get_context("spawn")
ATTEMPTS = 2  # a validation whose worker died is tried once more, on a fresh worker
log = logging.getLogger("nncards.server")


def canonical_hash(graph: Graph) -> str:
    """A hash of everything in the graph that decides its validation.

    Dumped in Python mode, where NaN, Infinity and -Infinity stay floats: JSON mode would turn
    them all into null, and a graph with NaN would share its key with the same graph with null.
    """
    content = graph.model_dump(exclude={"nodes": {"__all__": {"position"}}})
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def warm_up_keras() -> None:
    """Import TensorFlow and Keras and build a tiny graph once, so that later work starts warm."""
    import keras  # noqa: F401  (the import is the point: TensorFlow loads once, here)

    validate({"nodes": [{"id": "x", "card": "input", "params": {"shape": [1]}},
                        {"id": "y", "card": "output"}],
              "edges": [{"source": "x", "source_port": "output", "target": "y", "target_port": "input"}]})


def start_tensorflow(threads: int) -> None:
    """Start of a worker process: TensorFlow imported, its thread pools capped, Keras warmed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    warm_up_keras()
    # What the import and the warm-up leave (~335k objects, hardly any garbage) lives as long as the
    # process: frozen, Python's full collections no longer walk it (173 ms of CPU a collection; a
    # run worker made one every ~7 runs, 260 ms inside a run).
    gc.freeze()


# The validation worker process's own validator (and so its memo), made as the process starts.
_IN_WORKER: dict[str, Validator] = {}


def start_validation_worker(server_pid: int, limits: Limits, memo_bytes: int) -> None:
    die_with_parent(server_pid)
    # One TensorFlow thread: a symbolic build computes nothing worth parallelizing.
    start_tensorflow(1)
    _IN_WORKER["validator"] = Validator(limits, memo_bytes=memo_bytes)


def _invalid(problem: Problem) -> ValidationResult:
    return ValidationResult(valid=False, errors=[problem], shapes={})


def _out_of_memory(how: str) -> ValidationResult:
    return _invalid(Problem(code=ErrorCode.TOO_LARGE, message=f"validating this graph {how}: it needs more "
                            "memory than the server has"))


def validate_in_worker(graph: dict) -> dict:
    return _IN_WORKER["validator"].validate(graph)


def _worker_lost(stop: WorkerStop) -> ValidationResult:
    """The answer for a graph whose validation stopped its worker every time, the last time so."""
    if stop.out_of_memory:
        return _out_of_memory(f"stopped the validation process {ATTEMPTS} times, killed by SIGKILL "
                              "(the out-of-memory killer's signal)")
    # Not too_large: the graph crashed TensorFlow or Keras' native code building it, which no limit
    # of the server's would change; as for a node Keras refuses, the graph cannot be built.
    return _invalid(Problem(code=ErrorCode.PARAM_INVALID, message=f"validating this graph crashed the validation "
                            f"process {ATTEMPTS} times ({stop.cause}): a layer's native code fails on what the "
                            "graph gives it, so the graph cannot be built"))


class ValidationService:
    """Validations in worker processes; results cached by graph content, within `cache_size`
    entries and `CACHE_BYTES` of answers (a result may echo large values)."""

    CACHE_BYTES = 32 * 2**20

    def __init__(self, limits: Limits, cache_size: int, workers: int, memo_bytes: int, idle_seconds: float = 0):
        """`idle_seconds`: how long the workers may wait for a validation before they stop (0: forever)."""
        self.limits = limits
        self.cache_size = cache_size
        self.workers = workers
        self.memo_bytes = memo_bytes
        self.idle_seconds = idle_seconds
        self._cache: OrderedDict[str, tuple[ValidationResult, int]] = OrderedDict()
        self._cache_bytes = 0
        self._under_way: dict[str, asyncio.Future[ValidationResult]] = {}  # by key: asked again, awaited again
        self._pool: ProcessPoolExecutor | None = None
        self._busy = 0  # validations under way
        self._idle_timer: asyncio.TimerHandle | None = None

    def _stop_when_idle(self) -> None:
        """(Re)start the idle clock of the workers; called on the event loop."""
        if self._idle_timer:
            self._idle_timer.cancel()
        if self.idle_seconds and self._pool is not None:
            self._idle_timer = asyncio.get_running_loop().call_later(self.idle_seconds, self._stop_idle)

    def _stop_idle(self) -> None:
        if self._busy or self._pool is None:
            return
        log.info("the validation workers stop after %g s without a validation", self.idle_seconds)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None

    def _executor(self) -> ProcessPoolExecutor:
        # Created on first use: a server that only serves the catalogue starts no worker.
        if self._pool is None:
            log.info("the validation workers start (%d)", self.workers)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=SPAWN, initializer=start_validation_worker,
                                             initargs=(os.getpid(), self.limits, self.memo_bytes))
        return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Forgets a broken pool (`why_stopped` shuts it down): the next validation starts another."""
        if self._pool is broken:  # concurrent validations see the same broken pool; replace it once
            log.error("a validation worker stopped unexpectedly; starting a new one")
            self._pool = None

    def warm_up(self) -> None:
        """Start the validation workers (they import TensorFlow as they start); returns at once."""
        for _ in range(self.workers):
            self._executor().submit(os.getpid).add_done_callback(
                lambda done: done.exception() and log.error("TensorFlow warm-up failed: %s", done.exception()))
        self._stop_when_idle()

    def prepare(self) -> None:
        """A graph to validate is coming: start the workers now if they are not running."""
        if self._pool is None:
            self.warm_up()

    async def validate(self, graph: Graph,
                       elsewhere: Callable[[dict], Awaitable[dict | None]] | None = None) -> ValidationResult:
        """The graph's validation; `elsewhere`, when given, validates the graph's plain data in another
        process when these workers are not running, or answers None (then they validate it). A graph
        being validated already (a run's, asked as its body arrived and again once it is parsed) is
        not validated twice."""
        key = canonical_hash(graph)
        cached = self.cached(graph, key)
        if cached is not None:
            return cached
        under_way = self._under_way.get(key)
        if under_way is None:
            under_way = self._under_way[key] = asyncio.ensure_future(self._validate_new(key, graph, elsewhere))
            under_way.add_done_callback(lambda _: self._under_way.pop(key, None))
        return await asyncio.shield(under_way)  # one asker's cancellation leaves the others their answer

    def cached(self, graph: Graph, key: str | None = None) -> ValidationResult | None:
        """The graph's validation when the cache holds it (`key`: its `canonical_hash`, if known), else None."""
        key = key or canonical_hash(graph)
        cached = self._cache.get(key)
        if cached is None:
            return None
        self._cache.move_to_end(key)
        return cached[0]

    async def _validate_new(self, key: str, graph: Graph,
                            elsewhere: Callable[[dict], Awaitable[dict | None]] | None) -> ValidationResult:
        content = graph.model_dump()  # plain data: cheaper to send to a worker than the model
        if self._pool is None and elsewhere is not None:
            answer = await elsewhere(content)
            if answer is not None:
                return self._remember(key, ValidationResult.model_validate(answer))
        self._busy += 1
        try:
            return await self._validate_uncached(key, content)
        finally:
            self._busy -= 1
            self._stop_when_idle()

    async def _validate_uncached(self, key: str, content: dict) -> ValidationResult:
        for _ in range(ATTEMPTS):
            pool, future = submit(self._executor, self._replace, validate_in_worker, content)
            try:
                result = ValidationResult.model_validate(await asyncio.wrap_future(future))
                break
            except MemoryError:  # raised in the worker: not cached, as memory may be free later
                return _out_of_memory("ran out of memory in the validation process")
            except BrokenProcessPool:
                self._replace(pool)
                stop = await why_stopped(pool)
        else:
            return _worker_lost(stop)  # not cached: a later request tries again
        return self._remember(key, result)

    def _remember(self, key: str, result: ValidationResult) -> ValidationResult:
        size = len(result.model_dump_json())
        if self.cache_size and size <= self.CACHE_BYTES:
            previous = self._cache.pop(key, None)  # the same graph validated twice at once
            self._cache_bytes -= previous[1] if previous else 0
            self._cache[key] = (result, size)
            self._cache_bytes += size
            while len(self._cache) > self.cache_size or self._cache_bytes > self.CACHE_BYTES:
                self._cache_bytes -= self._cache.popitem(last=False)[1][1]
        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
