"""Where runs execute: the `Executor` boundary, and its local implementation on worker processes.

The run service speaks to an executor only: `submit` a run once `capacity` says one can start,
`cancel` it (stop at its next batch), `kill` it (stop now, every process it started gone, its
slot free again), `close` everything. The executor reports back through two callbacks, on the
event loop: every `nncards.execute.messages` message of a run it is executing (RunStarted,
RunProgress, RunFinished — the same protocol whatever the transport), and `on_lost` when a run
ends without its RunFinished (its process died). Another executor (a Ray cluster) fits behind
the same interface and the same messages. A RunFinished's result has its arrays already
written as `.npy` files in `results_dir/<run_id>/` (see `results.py`): results never travel whole.

Local workers are spawned (never forked: TensorFlow's threads do not survive a fork), cap
TensorFlow's thread pools so that several workers share the cores, and import TensorFlow as
soon as they start, then build or load nncards' batch normalization op on a thread of their own
(the first use on a machine compiles it). They start as a run request arrives, before its body
is read (or at the warm-up), and stop after `idle_seconds` without a run: each holds some 600 MiB
of TensorFlow, which an idle server gives back; the next run pays only the import again. An idle
worker also validates a run's graph when the validation workers are not running (`validate`): a
cold run then imports TensorFlow once,
in the process that runs it, not in two processes at once on the same cores. Once a run request is
accepted, the idle worker that will take it builds its model (`build_ahead`) while the server
stores the request's arrays: the model is not built after they are stored; when the body opens with
its graph, the build is asked for as soon as the body has arrived, while the body is parsed. Once the
request is parsed, a model for a run that opens with a fit is also compiled for that fit, its
optimizer's variables made, before the arrays are stored (some 16 ms of the run). They run at a lower
priority (niceness) than the server, set before TensorFlow starts its threads (Linux nices a
thread, and a thread inherits its creator's niceness): training takes
the cores the server leaves idle, and a request or validation never queues behind it. A worker
talks to the server over a pipe; a shared flag asks its run to stop at its next batch; a worker
that must stop at once is killed and replaced. Workers (and a distributed run's child) die
with the server, `kill -9` included.
"""

from __future__ import annotations

import abc
import asyncio
import gc
import itertools
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from nncards.contract.errors import NncardsError
from nncards.contract.events import RunEvent
from nncards.contract.graph import Graph
from nncards.contract.limits import Limits
from nncards.contract.run import FitStep, Run
from nncards.build.model import BuiltModel, build_checked
from nncards.build.validation import Validator, analyze
from nncards.execute.entry import check_runs_here
from nncards.execute.lifeline import die_with_parent
from nncards.execute.messages import RunFinished, RunProgress, RunStarted, WorkerMessage
from nncards.execute.options import RunOptions
from nncards.execute.runner import compile_ahead, fit_compile
from nncards.server.services.request_arrays import StoredRequest
from nncards.server.services.results import write_arrays

SPAWN = multiprocessing.get_context("spawn")
log = logging.getLogger("nncards.server")

OnMessage = Callable[[WorkerMessage], None]
OnLost = Callable[[str, str], None]  # run id, why its executor lost it (a sentence)


def _ignore_failure(sent: asyncio.Future) -> None:
    """A send nobody awaits: a worker that died is reported by its listener, not by the send."""
    if not sent.cancelled():
        sent.exception()


class Executor(abc.ABC):
    """Executes runs and reports their messages; every callback is called on the event loop."""

    def __init__(self, on_message: OnMessage, on_lost: OnLost):
        self.on_message, self.on_lost = on_message, on_lost

    @abc.abstractmethod
    def start(self) -> None:
        """Get ready to take runs (called on the event loop)."""

    def check(self, request: Run) -> None:
        """Refuse (`NncardsError`) a valid RUN this executor could never execute; by default none."""

    @abc.abstractmethod
    async def capacity(self) -> None:
        """Return once `submit` can start a run at once."""

    @abc.abstractmethod
    async def submit(self, run_id: str, request: StoredRequest) -> None:
        """Start a run; its messages follow through `on_message`. Only after `capacity`."""

    @abc.abstractmethod
    def cancel(self, run_id: str) -> None:
        """Ask a run to stop at its next batch; it still ends with its RunFinished."""

    @abc.abstractmethod
    def kill(self, run_id: str) -> None:
        """Stop a run now: no further message about it, its processes gone, its slot free again."""

    @abc.abstractmethod
    def running(self) -> set[str]:
        """The runs being executed."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop every run and process."""

    def warm_up(self) -> None:
        """Get ready for runs ahead of the first one (called on the event loop); by default nothing to do."""

    def prepare(self) -> None:
        """A run is coming (it is being validated): get ready for it; by default nothing to do."""

    def build_ahead(self, request: Run) -> None:
        """A run request with a valid graph is coming (its body has arrived, or it is checked and being
        stored): start on its model meanwhile; by default nothing to do."""

    def can_validate(self) -> bool:
        """Whether `validate` would find a process to validate a graph in now; by default never."""
        return False

    async def validate(self, graph: dict) -> dict | None:
        """The validation of a graph (plain data) by a process that is ready for runs, or None when
        none can (the caller validates elsewhere); by default None."""
        return None


# -- the local implementation: a pool of worker processes ----------------------------------------


class PipeObserver:
    """A run's observer inside a worker: forwards its events, reads the cancel flag."""

    def __init__(self, connection, run_id: str, cancel):
        self.connection, self.run_id, self.cancel = connection, run_id, cancel

    def emit(self, event: RunEvent) -> None:
        self.connection.send(RunProgress(run_id=self.run_id, event=event))

    def cancelled(self) -> bool:
        return self.cancel.is_set()


@dataclass(frozen=True)
class ValidateGraph:
    """Asks an idle worker for a graph's validation; `ticket` pairs the answer with the question."""

    ticket: int
    graph: dict


@dataclass(frozen=True)
class PrepareRun:
    """Asks the idle worker that the next run goes to for the model of a (validated) graph and seed,
    which it keeps for the run if the run is its next message; with `compiled` (the run's first step
    is a fit: `runner.fit_compile`), compiled as that fit will, its optimizer's variables made. A
    PrepareRun that only adds `compiled` to the one before it compiles the model that one built."""

    graph: dict
    seed: int
    compiled: tuple | None = None


@dataclass(frozen=True)
class BuiltAhead:
    """Inside a worker: the model a `PrepareRun` built, and what it was built from."""

    graph: dict
    seed: int
    built: BuiltModel
    compiled: tuple | None  # as PrepareRun's

    def serves(self, request: Run) -> bool:
        return (request.distribution is None and request.seed == self.seed
                and request.graph.model_dump() == self.graph)


@dataclass(frozen=True)
class GraphValidated:
    """A worker's answer to `ValidateGraph`: the validation result, or None when validating raised."""

    ticket: int
    result: dict | None


class IdleCollector:
    """A run worker's full garbage collections, made between runs rather than inside them.

    A run leaves its model and Keras' traced functions in reference cycles that have outlived the
    young collections, which only a full collection frees. Python makes one when the objects that
    outlived the young collections since the last full one pass a quarter of those that outlived
    it: inside a run, every 7-12 warm runs here, ~100 ms of one. The worker applies the same rule
    as it finishes a run, before it waits for its next message, so that Python's own rarely falls
    inside a run. A full collection after every run would walk each time all that lives on in the
    worker (a validator's memo of built nodes, what TensorFlow keeps of graphs it traced), however
    little the run added to it."""

    SHARE = 0.25  # Python's: how much the old generation grows before a full collection is due

    def __init__(self) -> None:
        self.survivors = len(gc.get_objects(generation=2))

    def after_run(self) -> None:
        gc.collect(1)  # the young generations (a few ms): what outlives them is what the rule counts
        if len(gc.get_objects(generation=2)) - self.survivors > self.SHARE * self.survivors:
            gc.collect()
            self.survivors = len(gc.get_objects(generation=2))


def worker_main(connection, cancel, server_pid: int, threads: int, niceness: int, limits: Limits,
                results_dir: Path, max_result_elements: int, memo_bytes: int) -> None:
    """Entry point of a worker process: runs, their arrays written to `results_dir/<run_id>/`, and
    validations asked while it is idle."""
    die_with_parent(server_pid)
    os.nice(niceness)
    from nncards.server.services.validation import start_tensorflow

    start_tensorflow(threads)
    from nncards.execute.entry import execute
    from nncards.layers.batch_norm_op import prepare_in_background

    prepare_in_background()  # the first use on a machine compiles nncards' op (~10 s): while idle, not in a run

    validator: Validator | None = None  # made on the first validation: most workers never validate
    ahead: BuiltAhead | None = None
    collector = IdleCollector()
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        # A model built ahead serves only the message right after its PrepareRun: other work in
        # between (a validation) may draw random numbers between the seeding of the model and the
        # run, which would then differ from the same run building its model itself.
        built_ahead, ahead = ahead, None
        if isinstance(message, PrepareRun):
            ahead = _build_ahead(message, limits, built_ahead)
            continue
        if isinstance(message, ValidateGraph):
            validator = validator or Validator(limits, memo_bytes=memo_bytes)
            try:
                result = validator.validate(message.graph)
            except Exception:  # the server validates it again in its validation workers, which report it
                log.exception("validating a graph in %s failed", multiprocessing.current_process().name)
                result = None
            connection.send(GraphValidated(message.ticket, result))
            continue
        run_id, request = message  # a StoredRequest: its arrays are mapped from their files
        connection.send(RunStarted(run_id=run_id))
        serves = built_ahead is not None and built_ahead.serves(request.run)
        options = RunOptions(limits=limits, observer=PipeObserver(connection, run_id, cancel), run_id=run_id,
                             as_base64=True, built=built_ahead.built if serves else None,
                             compiled=built_ahead.compiled if serves else None)
        result, _ = write_arrays(execute(request.loaded(), options), results_dir / run_id, max_result_elements)
        connection.send(RunFinished(run_id=run_id, result=result))
        del options, built_ahead  # the finished run's model: an idle worker holds none
        collector.after_run()


def _build_ahead(message: PrepareRun, limits: Limits, before: BuiltAhead | None) -> BuiltAhead | None:
    """The model a PrepareRun asks for, compiled when it asks so; None when it does not build or
    compile (the run then does both itself, and reports why). The model the PrepareRun `before` it
    built serves when it is of the same graph and seed and not compiled yet. The server validated
    the graph: its structure is analyzed again, its shapes are not checked again."""
    try:
        if before is not None and before.compiled is None and (before.graph, before.seed) == (message.graph,
                                                                                              message.seed):
            built = before.built
        else:
            analysis = analyze(Graph.model_validate(message.graph), limits)
            built = build_checked(analysis, analysis.problems, limits, message.seed)
        if message.compiled is not None:
            compile_ahead(built, message.compiled)
    except NncardsError:
        return None  # not valid after all: its run reports it
    except Exception:
        log.exception("building a model ahead in %s failed", multiprocessing.current_process().name)
        return None
    return BuiltAhead(message.graph, message.seed, built, message.compiled)


class Worker:
    """One worker process, the pipe to it and the thread that listens to it."""

    _numbers = itertools.count(1)

    def __init__(self, pool: LocalExecutor):
        self.name = f"nncards-worker-{next(self._numbers)}"
        self.cancel = SPAWN.Event()
        self.connection, child = SPAWN.Pipe()
        self.process = SPAWN.Process(target=worker_main, name=self.name, daemon=True,
                                     args=(child, self.cancel, os.getpid(), pool.threads, pool.niceness, pool.limits,
                                           pool.results_dir, pool.max_result_elements, pool.memo_bytes))
        self.process.start()
        child.close()
        self.run_id: str | None = None
        self.retired = False
        self.idle_timer: asyncio.TimerHandle | None = None  # stops the worker once idle too long
        self.validations: dict[int, asyncio.Future] = {}  # asked of this worker, not answered yet, by ticket
        self.prepared: PrepareRun | None = None  # the last message sent, when it asked for a model ahead
        # Messages go out one after another, in the order they were sent, each whole, off the event
        # loop: a worker still importing TensorFlow reads nothing yet, and a full pipe waits for it.
        self._sender = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-sender")
        self._pool = pool
        threading.Thread(target=self._listen, name=f"{self.name}-listener", daemon=True).start()

    def send(self, message) -> asyncio.Future:
        """Send a message after those sent before it; the future fails with OSError if the worker died."""
        self.prepared = message if isinstance(message, PrepareRun) else None
        return self._pool.loop.run_in_executor(self._sender, self.connection.send, message)

    def _listen(self) -> None:
        loop = self._pool.loop
        while True:
            try:
                message = self.connection.recv()
            except (EOFError, OSError):
                break
            loop.call_soon_threadsafe(self._pool.received, self, message)
        if not loop.is_closed():
            loop.call_soon_threadsafe(self._pool.exited, self)

    def stop(self) -> None:
        """Kill the process at once; its run, if any, is the caller's to report."""
        self.retired = True
        self.process.kill()
        self.process.join(5)
        # The pipe is closed after the sends still queued, which fail with OSError (no reader) as
        # their callers expect: closed under a send, it failed otherwise, and a cancelled send would
        # raise CancelledError into the dispatcher.
        self._sender.submit(self.connection.close)
        self._sender.shutdown(wait=False)


class LocalExecutor(Executor):
    """Up to `size` worker processes on this machine, one run at a time each, started when needed."""

    def __init__(self, on_message: OnMessage, on_lost: OnLost, *, size: int, threads: int, niceness: int,
                 limits: Limits, results_dir: Path, max_result_elements: int, idle_seconds: float = 0,
                 memo_bytes: int | None = None):
        """`idle_seconds`: how long a worker may wait for a run before it stops (0: forever);
        `memo_bytes`: the node memo of a worker's validator (see `Validator`)."""
        super().__init__(on_message, on_lost)
        self.size, self.threads, self.niceness, self.limits = size, threads, niceness, limits
        self.results_dir, self.max_result_elements = results_dir, max_result_elements
        self.idle_seconds, self.memo_bytes = idle_seconds, memo_bytes
        self.workers: list[Worker] = []
        self._idle: list[Worker] = []
        self._freed = asyncio.Event()
        self._tickets = itertools.count(1)
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()

    def warm_up(self) -> None:
        while len(self.workers) < self.size:
            self._add_idle(self._spawn())

    def prepare(self) -> None:
        # A worker started now imports TensorFlow while the run is validated, not after.
        if not self._idle and len(self.workers) < self.size:
            self._add_idle(self._spawn())

    def _spawn(self) -> Worker:
        worker = Worker(self)
        self.workers.append(worker)
        return worker

    def _add_idle(self, worker: Worker) -> None:
        worker.run_id = None
        self._idle.append(worker)
        self._freed.set()
        self._start_idle_clock(worker)

    def _start_idle_clock(self, worker: Worker) -> None:
        if self.idle_seconds:
            worker.idle_timer = self.loop.call_later(self.idle_seconds, self._stop_idle, worker)

    def _stop_idle_clock(self, worker: Worker) -> None:
        if worker.idle_timer:
            worker.idle_timer.cancel()
            worker.idle_timer = None

    def _stop_idle(self, worker: Worker) -> None:
        if worker in self._idle:
            log.info("%s stops after %g s without a run", worker.name, self.idle_seconds)
            self._idle.remove(worker)
            self.workers.remove(worker)
            worker.stop()

    def check(self, request: Run) -> None:
        check_runs_here(request)

    async def capacity(self) -> None:
        while not self._idle:
            if len(self.workers) < self.size:
                self._add_idle(self._spawn())  # it takes the run once TensorFlow is imported
                return
            self._freed.clear()
            await self._freed.wait()

    def can_validate(self) -> bool:
        return bool(self._idle)

    async def validate(self, graph: dict) -> dict | None:
        """The validation by an idle worker (one still importing TensorFlow answers once it is ready);
        None when no worker is idle, or when it stops or fails before it answers."""
        if not self._idle:
            return None
        worker = self._idle[0]  # the one the next run goes to
        ticket = next(self._tickets)
        answer = worker.validations[ticket] = self.loop.create_future()
        self._stop_idle_clock(worker)  # not stopped for idleness while it validates
        try:
            await worker.send(ValidateGraph(ticket, graph))
            return await answer
        except OSError:
            return None  # the worker died
        finally:
            worker.validations.pop(ticket, None)
            if worker in self._idle and not worker.validations and not worker.retired:
                self._start_idle_clock(worker)

    def build_ahead(self, request: Run) -> None:
        # A distributed run builds its model in a process of its own. A model the worker's last
        # message asked for already (as the body arrived: see routers/runs.py) is not asked again.
        if self._idle and request.distribution is None:
            first = request.steps[0] if request.steps else None
            worker, prepare = self._idle[0], PrepareRun(request.graph.model_dump(), request.seed,
                                                        fit_compile(first) if isinstance(first, FitStep) else None)
            if worker.prepared != prepare:
                worker.send(prepare).add_done_callback(_ignore_failure)

    async def submit(self, run_id: str, request: StoredRequest) -> None:
        worker = self._idle.pop(0)
        self._stop_idle_clock(worker)
        worker.run_id = run_id
        worker.cancel.clear()
        try:
            await worker.send((run_id, request))
        except OSError:
            pass  # the worker died: its listener reports the loss of the run

    def _busy_with(self, run_id: str) -> Worker | None:
        return next((w for w in self.workers if w.run_id == run_id and not w.retired), None)

    def cancel(self, run_id: str) -> None:
        worker = self._busy_with(run_id)
        if worker:
            worker.cancel.set()

    def kill(self, run_id: str) -> None:
        worker = self._busy_with(run_id)
        if worker:
            worker.run_id = None
            self._replace(worker)

    def running(self) -> set[str]:
        return {w.run_id for w in self.workers if w.run_id is not None and not w.retired}

    def received(self, worker: Worker, message: WorkerMessage | GraphValidated) -> None:
        if isinstance(message, GraphValidated):
            answer = worker.validations.get(message.ticket)
            if answer is not None and not answer.done():
                answer.set_result(message.result)
            return
        if worker.run_id != message.run_id or worker.retired:
            return  # a late word from a run the server already ended
        if isinstance(message, RunFinished):
            self._add_idle(worker)
        self.on_message(message)

    def exited(self, worker: Worker) -> None:
        for answer in worker.validations.values():
            if not answer.done():
                answer.set_result(None)  # the graph is validated elsewhere
        if worker.retired:
            return
        log.error("%s stopped unexpectedly (exit code %s)", worker.name, worker.process.exitcode)
        run_id = worker.run_id
        self._replace(worker)
        if run_id is not None:
            self.on_lost(run_id, f"The worker process stopped unexpectedly (exit code {worker.process.exitcode}).")

    def _replace(self, worker: Worker) -> None:
        """Kill a worker (if still alive); the next run that needs one starts a fresh one."""
        if not worker.retired:
            worker.stop()
        self.workers.remove(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        self._freed.set()

    def close(self) -> None:
        for worker in list(self.workers):
            worker.stop()
        self.workers.clear()
        self._idle.clear()
