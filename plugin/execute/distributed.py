"""Distributed runs: a RUN with a `distribution` executes in a fresh child process.

TensorFlow fixes its logical devices when its runtime starts and does not reliably host two
mirrored strategies in one process, so every distributed run gets its own process: it splits
the CPU into the requested number of logical devices before TensorFlow does anything else,
builds the model and runs the steps under the strategy's scope, and reports events and the RUN
RESULT back as JSON lines of `nncards.execute.messages`; the parent relays cancellation the
other way. The child is its own process group leader, so stopping it stops all it started.

Under a mirrored strategy a `fit` splits each batch across the replicas. Batch normalization
layers with `synchronized: true` then normalize with the statistics of the global batch; the
others use their replica's share, and Keras 3 keeps the moving statistics of the first replica.
`multi_worker_mirrored` reads the cluster from the `TF_CONFIG` environment variable: start the
same RUN on every machine of the cluster, each with its own `TF_CONFIG` (task type and index).
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading

from nncards.contract.errors import ErrorCode
from nncards.contract.limits import Limits
from nncards.contract.run import Distribution, Run, RunResult, RunStatus
from nncards.execute.lifeline import die_with_parent
from nncards.execute.messages import WORKER_MESSAGE, RunFinished, RunProgress
from nncards.execute.options import RunOptions
from nncards.execute.runner import run_steps

POLL_SECONDS = 0.1
CANCEL = "cancel"
PARENT_VARIABLE = "NNCARDS_PARENT_PID"  # the child dies with the process that started it


class _ChildObserver:
    """The child's observer: events go to the parent, cancellation comes from it."""

    def __init__(self, channel, run_id: str, cancel: threading.Event):
        self.channel, self.run_id, self.cancel = channel, run_id, cancel

    def send(self, message: RunProgress | RunFinished) -> None:
        self.channel.write(message.model_dump_json() + "\n")
        self.channel.flush()

    def emit(self, event) -> None:
        self.send(RunProgress(run_id=self.run_id, event=event))

    def cancelled(self) -> bool:
        return self.cancel.is_set()


def strategy_for(distribution: Distribution):
    """Split the CPU into logical devices, then make the strategy (TensorFlow not yet started)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(distribution.devices)])
    if distribution.strategy == "mirrored":
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    return tf.distribute.MultiWorkerMirroredStrategy()


def _watch_parent(cancel: threading.Event) -> None:
    """Cancel on the parent's word; stop at once when the parent is gone (its pipe closes)."""
    for line in sys.stdin:
        if line.strip() == CANCEL:
            cancel.set()
    os._exit(1)


def child_main() -> None:
    """The child process: the job on stdin's first line, messages on stdout."""
    die_with_parent(int(os.environ.get(PARENT_VARIABLE, os.getppid())))
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever TensorFlow or Keras print must not mix with the messages
    job = json.loads(sys.stdin.readline())
    request = Run.model_validate(job["request"])
    cancel = threading.Event()
    threading.Thread(target=_watch_parent, args=(cancel,), daemon=True).start()
    strategy = strategy_for(request.distribution)
    observer = _ChildObserver(channel, job["run_id"], cancel)
    options = RunOptions(limits=Limits(**job["limits"]), observer=observer, run_id=job["run_id"],
                         as_base64=job["as_base64"])
    with strategy.scope():
        result = run_steps(request, options)
    observer.send(RunFinished(run_id=job["run_id"], result=result))


def run_distributed(request: Run, options: RunOptions) -> RunResult:
    """The RUN RESULT of a distributed RUN, computed in a fresh child process."""
    job = {"request": request.model_dump(mode="json", by_alias=True), "limits": dataclasses.asdict(options.limits),
           "run_id": options.run_id, "as_base64": options.as_base64}
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen([sys.executable, "-m", "nncards.execute.distributed"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
                                 env={**os.environ, PARENT_VARIABLE: str(os.getpid())})
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in child.stdout] + [lines.put(None)],
                         daemon=True).start()
        try:
            child.stdin.write(json.dumps(job) + "\n")
            child.stdin.flush()
            while True:
                if options.observer.cancelled():
                    child.stdin.write(CANCEL + "\n")
                    child.stdin.flush()
                try:
                    line = lines.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if line is None:
                    log.seek(0)
                    return _child_died(options.run_id, child.wait(), log.read())
                match WORKER_MESSAGE.validate_json(line):
                    case RunFinished(result=result):
                        return result
                    case RunProgress(event=event):
                        options.observer.emit(event)
        finally:
            _stop_group(child)


def _stop_group(child: subprocess.Popen) -> None:
    """Kill the child and everything it started (its process group)."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


def _child_died(run_id: str, exitcode: int, log: str) -> RunResult:
    last = [line for line in log.strip().splitlines() if line.strip()][-1:] or ["no message"]
    return RunResult.stopped(run_id, RunStatus.FAILED, ErrorCode.RUN_FAILED,
                             f"The distributed run's child process ended without a result "
                             f"(exit code {exitcode}): {last[0]}")


if __name__ == "__main__":
    child_main()
