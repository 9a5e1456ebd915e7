"""Runs on a Ray cluster: each run a Ray task on a node that has the resources the run asks for.

The process that submits runs (the server) is a Ray driver. Runs talk back through one small
actor of the driver's, the run board, pinned to the head node: a run's task posts its messages
(`nncards.execute.messages`, the same protocol as a local worker's pipe) there and reads there
whether it was asked to stop; a relay thread of the driver takes the messages every tenth of a
second and hands them on in order. A run ends with its RunFinished, posted and awaited by the
task before it returns, so the relay has seen every message of a task that has completed.

- `cancel` asks the run to stop at its next batch (the local executor's cancel); `kill` stops
  its task at once (`ray.cancel(force=True)`: the process on its node is killed).
- A task whose process or node dies ends its run `failed` with `run_node_lost`.
- A RUN with `multi_worker_mirrored` and `workers: N` trains on N Ray Train workers
  (`TensorflowTrainer`, which writes each worker's `TF_CONFIG`) under
  `MultiWorkerMirroredStrategy`; the worker of rank 0 reports. Its workers meet in collective
  operations, so none may stop on its own: cancelling such a run kills it.

Ray is imported here only, and only when a cluster is used.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nncards.contract.errors import ErrorCode, NncardsError, Problem
from nncards.contract.limits import Limits
from nncards.contract.run import Resources, Run, RunResult, RunStatus
from nncards.execute.entry import checked_request, execute
from nncards.execute.messages import WORKER_MESSAGE, RunFinished, RunProgress, RunStarted, WorkerMessage
from nncards.execute.options import RunOptions, SilentObserver

log = logging.getLogger("nncards.ray")

ADDRESS_VARIABLE = "NNCARDS_RAY_ADDRESS"
NAMESPACE = "nncards"
RELAY_SECONDS = 0.1
CANCEL_CHECK_SECONDS = 0.25  # a run asks the board whether to stop at most this often
HEAD_NODE = "node:__internal_head__"  # the resource only the head node has
# What a run's task raises when its process or its node went away rather than the run failing.
LOST_ERRORS = ("WorkerCrashedError", "NodeDiedError", "OwnerDiedError", "ObjectLostError", "ActorDiedError",
               "ActorUnavailableError", "RaySystemError", "LocalRayletDiedError", "ObjectFetchTimedOutError")


def multi_worker(request: Run) -> bool:
    return request.distribution is not None and request.distribution.across_workers


def task_name(run_id: str) -> str:
    """The name of a run's Ray task, as the Ray state API lists it."""
    return f"nncards-run-{run_id}"


# -- the run board: an actor of the driver's ------------------------------------------------------


class RunBoard:
    """Messages of runs waiting for the driver, and the runs asked to stop."""

    def __init__(self):
        self.messages: dict[str, list[str]] = {}
        self.stopping: set[str] = set()

    def post(self, run_id: str, message: str) -> None:
        self.messages.setdefault(run_id, []).append(message)

    def take(self) -> dict[str, list[str]]:
        messages, self.messages = self.messages, {}
        return messages

    def stop(self, run_id: str) -> None:
        self.stopping.add(run_id)

    def stop_asked(self, run_id: str) -> bool:
        return run_id in self.stopping

    def forget(self, run_id: str) -> None:
        self.stopping.discard(run_id)
        self.messages.pop(run_id, None)


class BoardObserver:
    """A run's observer inside its task: events posted to the board, the stop flag read there."""

    def __init__(self, board, run_id: str):
        self.board, self.run_id = board, run_id
        self._checked_at, self._stop = 0.0, False

    def send(self, message: WorkerMessage) -> None:
        self.board.post.remote(self.run_id, message.model_dump_json())

    def emit(self, event) -> None:
        self.send(RunProgress(run_id=self.run_id, event=event))

    def cancelled(self) -> bool:
        import ray

        if not self._stop and time.monotonic() - self._checked_at > CANCEL_CHECK_SECONDS:
            self._stop = ray.get(self.board.stop_asked.remote(self.run_id))
            self._checked_at = time.monotonic()
        return self._stop

    def finish(self, result: RunResult) -> None:
        """Post the result and wait until the board has it (and so every earlier message)."""
        import ray

        ray.get(self.board.post.remote(self.run_id, RunFinished(run_id=self.run_id, result=result).model_dump_json()))


@dataclass(frozen=True)
class Job:
    """What a run's task gets: the checked request as JSON, and how to run it."""

    run_id: str
    request: dict
    limits: Limits
    as_base64: bool
    cpus: float


def _cap_threads(cpus: float) -> None:
    """TensorFlow's thread pools sized to the cores the run holds (Ray reserves, it does not limit)."""
    import tensorflow as tf

    threads = max(1, math.floor(cpus))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # a process Ray reuses already started TensorFlow with the same cap


def run_task(board, job: Job) -> None:
    """A run's Ray task, on whichever node the scheduler chose."""
    observer = BoardObserver(board, job.run_id)
    observer.send(RunStarted(run_id=job.run_id))
    _cap_threads(job.cpus)
    options = RunOptions(limits=job.limits, observer=observer, run_id=job.run_id, as_base64=job.as_base64)
    observer.finish(execute(job.request, options))


def train_task(board, job: Job, workers: int, resources: Resources, storage: str) -> None:
    """A multi-worker run's Ray task: starts its Ray Train workers and waits for them.

    The run stays queued until its workers have their resources and start: the first of them
    says so (RunStarted).
    """
    from ray.train import RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    per_worker = {"CPU": resources.cpus} | ({"GPU": resources.gpus} if resources.gpus else {})
    trainer = TensorflowTrainer(
        train_worker, train_loop_config={"board": board, "job": job},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=resources.gpus > 0,
                                     resources_per_worker=per_worker),
        run_config=RunConfig(name=task_name(job.run_id), storage_path=storage))
    trainer.fit()


def train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker of a multi-worker run (its `TF_CONFIG` written by Ray Train)."""
    import ray.train

    # Ray Train asks for Keras 2 through this variable; nncards builds with Keras 3.
    os.environ.pop("TF_USE_LEGACY_KERAS", None)
    import tensorflow as tf

    from nncards.execute.multi_worker import enable_multi_worker_fit
    from nncards.execute.runner import run_steps

    board, job = config["board"], config["job"]
    _cap_threads(job.cpus)
    enable_multi_worker_fit()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    reporter = BoardObserver(board, job.run_id) if ray.train.get_context().get_world_rank() == 0 else None
    if reporter:
        reporter.send(RunStarted(run_id=job.run_id))  # the time limit counts from here, not from scheduling
    # A worker alone must not stop (the others would wait for it in a collective): no stop flag.
    options = RunOptions(limits=job.limits, observer=_EventsOnly(reporter) if reporter else SilentObserver(),
                         run_id=job.run_id, as_base64=job.as_base64)
    with strategy.scope():
        result = run_steps(Run.model_validate(job.request), options)
    if reporter:
        reporter.finish(result)


class _EventsOnly:
    def __init__(self, observer: BoardObserver):
        self.observer = observer

    def emit(self, event) -> None:
        self.observer.emit(event)

    def cancelled(self) -> bool:
        return False


# -- the driver's side ----------------------------------------------------------------------------


@dataclass
class _Flight:
    """A run on the cluster, until its result comes or it is killed."""

    ref: Any
    multi_worker: bool


class RayRuns:
    """Submits runs to a Ray cluster and relays their messages to `on_message` (from a thread)."""

    def __init__(self, address: str, on_message: Callable[[WorkerMessage], None], limits: Limits,
                 *, train_storage: str | None = None):
        self.address, self.on_message, self.limits = address, on_message, limits
        self.train_storage = train_storage or os.path.join(tempfile.gettempdir(), "nncards-ray-train")
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._relay: threading.Thread | None = None
        self.board = None

    def start(self) -> None:
        import ray

        ray.init(address=self.address, namespace=NAMESPACE, log_to_driver=False, configure_logging=False)
        self.board = ray.remote(RunBoard).options(num_cpus=0, resources={HEAD_NODE: 0.001}).remote()
        self._run_task, self._train_task = ray.remote(run_task), ray.remote(train_task)
        self._relay = threading.Thread(target=self._relay_messages, name="nncards-ray-relay", daemon=True)
        self._relay.start()

    # -- submission ---------------------------------------------------------------------------------

    def check(self, request: Run) -> None:
        """Refuse, as `param_invalid` on the field, a run no set of the cluster's nodes could ever hold."""
        import ray

        resources = request.resources or Resources()
        workers = request.distribution.workers if multi_worker(request) else 1
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]

        def places(node: dict) -> float:
            fits = node.get("CPU", 0) // resources.cpus
            return min(fits, node.get("GPU", 0) // resources.gpus) if resources.gpus else fits

        if sum(places(node) for node in nodes) >= workers:
            return
        largest = {"cpus": max((n.get("CPU", 0) for n in nodes), default=0),
                   "gpus": max((n.get("GPU", 0) for n in nodes), default=0)}
        wanted = {"cpus": resources.cpus, "gpus": resources.gpus}
        field_name = next((k for k in ("gpus", "cpus") if wanted[k] > largest[k]), "cpus")
        who = f"{workers} workers each needing" if workers > 1 else "a run needing"
        message = (f"no node of the Ray cluster could ever hold {who} {wanted[field_name]:g} {field_name} "
                   f"(the largest node has {largest[field_name]:g})")
        raise NncardsError(ErrorCode.REQUEST_INVALID, message, [Problem(
            code=ErrorCode.PARAM_INVALID, port=f"resources/{field_name}", message=message,
            expected=f"at most {largest[field_name]:g}", received=wanted[field_name])])

    def submit(self, run_id: str, request: dict | Run, *, as_base64: bool = True) -> None:
        """Start a run on the cluster; a request that fails its checks ends at once with its error."""
        options = RunOptions(limits=self.limits, run_id=run_id)
        try:
            checked = checked_request(request, options)
            self.check(checked)
        except NncardsError as exc:
            self.on_message(RunFinished(run_id=run_id, result=RunResult.failed(run_id, exc)))
            return
        resources = checked.resources or Resources()
        job = Job(run_id=run_id, request=checked.model_dump(mode="json", by_alias=True), limits=self.limits,
                  as_base64=as_base64, cpus=resources.cpus)
        with self._lock:
            if multi_worker(checked):
                ref = self._train_task.options(name=task_name(run_id), num_cpus=0, max_retries=0).remote(
                    self.board, job, checked.distribution.workers, resources, self.train_storage)
            else:
                ref = self._run_task.options(name=task_name(run_id), num_cpus=resources.cpus,
                                             num_gpus=resources.gpus, max_retries=0).remote(self.board, job)
            self._flights[run_id] = _Flight(ref=ref, multi_worker=multi_worker(checked))

    def cancel(self, run_id: str) -> None:
        """Ask a run to stop at its next batch; a multi-worker run is stopped at once, as cancelled."""
        flight = self._flights.get(run_id)
        if flight is None:
            return
        if flight.multi_worker:
            self.kill(run_id)
            self.on_message(RunFinished(run_id=run_id, result=RunResult.stopped(
                run_id, RunStatus.CANCELLED, ErrorCode.RUN_CANCELLED,
                "The run was cancelled and its Ray Train workers stopped.")))
            return
        self.board.stop.remote(run_id)

    def kill(self, run_id: str) -> None:
        """Stop a run's task now (its process on its node is killed); no message about it follows."""
        import ray

        with self._lock:
            flight = self._flights.pop(run_id, None)
        if flight is None:
            return
        ray.cancel(flight.ref, force=True, recursive=True)
        self.board.forget.remote(run_id)

    def running(self) -> set[str]:
        return set(self._flights)

    def close(self) -> None:
        import ray

        self._closed.set()
        for run_id in list(self._flights):
            self.kill(run_id)
        if self._relay is not None:
            self._relay.join(5)
        ray.shutdown()

    # -- the relay ----------------------------------------------------------------------------------

    def _relay_messages(self) -> None:
        import ray

        while not self._closed.wait(RELAY_SECONDS):
            try:
                with self._lock:
                    refs = {f.ref: run_id for run_id, f in self._flights.items()}
                done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0) if refs else ([], [])
                for run_id, messages in ray.get(self.board.take.remote()).items():
                    for text in messages:
                        self._relay_one(WORKER_MESSAGE.validate_json(text))
                for ref in done:
                    self._task_ended(refs[ref], ref)
            except Exception:  # a relay that stops would leave every run running forever
                if not self._closed.is_set():
                    log.exception("relaying the messages of Ray runs")

    def _relay_one(self, message: WorkerMessage) -> None:
        flight = self._flights.get(message.run_id)
        if flight is None:
            return  # a run killed meanwhile: nothing more is said about it
        if isinstance(message, RunFinished):
            with self._lock:
                self._flights.pop(message.run_id, None)
            self.board.forget.remote(message.run_id)
        self.on_message(message)

    def _task_ended(self, run_id: str, ref) -> None:
        """A task that completed without its RunFinished: its process or node died, or it failed."""
        import ray

        with self._lock:
            flight = self._flights.pop(run_id, None)
        if flight is None:
            return  # its RunFinished came (or it was killed)
        try:
            ray.get(ref)
            code, message = ErrorCode.RUN_FAILED, "The run's Ray task ended without a result."
        except Exception as exc:
            text = str(exc).strip().splitlines()
            if type(exc).__name__ in LOST_ERRORS or any(name in str(exc) for name in LOST_ERRORS):
                code = ErrorCode.RUN_NODE_LOST
                message = (f"The Ray worker process or node executing the run stopped "
                           f"({type(exc).__name__}); the run was lost.")
            else:
                code = ErrorCode.RUN_FAILED
                message = f"The run's Ray task failed: {type(exc).__name__}: {text[0] if text else ''}"
        self.board.forget.remote(run_id)
        self.on_message(RunFinished(run_id=run_id, result=RunResult.stopped(run_id, RunStatus.FAILED, code, message)))
