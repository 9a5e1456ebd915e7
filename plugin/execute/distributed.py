"""Distributed runs: a RUN with a `distribution` executes in a fresh worker process.

TensorFlow fixes its logical devices when its runtime starts and does not reliably host two
mirrored strategies in one process, so every distributed run gets its own spawned process: it
splits the CPU into the requested number of logical devices before TensorFlow does anything
else, builds the model and runs the steps under the strategy's scope, and reports events and
the RUN RESULT back to the caller's process, which relays cancellation the other way.

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
import subprocess
import sys
import tempfile
import threading
from typing import Any

from nncards.contract.limits import Limits
from nncards.contract.run import Run

POLL_SECONDS = 0.1
CANCEL = "cancel"


class _Relay:
    """The worker's observer: events go to the parent, cancellation comes from it."""

    def __init__(self, channel, cancel: threading.Event):
        self.channel, self.cancel = channel, cancel

    def _send(self, kind: str, data) -> None:
        self.channel.write(json.dumps([kind, data]) + "\n")
        self.channel.flush()

    def step(self, index, kind, state):
        self._send("step", [index, kind, state])

    def epoch(self, step, epoch, epochs, metrics):
        self._send("epoch", [step, epoch, epochs, metrics])

    def cancelled(self):
        return self.cancel.is_set()


def strategy_for(distribution: dict):
    """Split the CPU into logical devices, then make the strategy (TensorFlow not yet started)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(distribution["devices"])])
    if distribution["strategy"] == "mirrored":
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    return tf.distribute.MultiWorkerMirroredStrategy()


def _watch_for_cancel(cancel: threading.Event) -> None:
    for line in sys.stdin:
        if line.strip() == CANCEL:
            cancel.set()


def worker_main() -> None:
    """The worker process: the request on stdin's first line, events and the result on stdout."""
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever TensorFlow or Keras print must not mix with the events
    job = json.loads(sys.stdin.readline())
    cancel = threading.Event()
    threading.Thread(target=_watch_for_cancel, args=(cancel,), daemon=True).start()
    strategy = strategy_for(job["request"].pop("distribution"))
    from nncards.execute.runner import run

    relay = _Relay(channel, cancel)
    with strategy.scope():
        result = run(job["request"], observer=relay, limits=Limits(**job["limits"]), run_id=job["run_id"],
                     as_base64=job["as_base64"])
    relay._send("result", result)


def run_distributed(request: Run, observer, limits: Limits, run_id: str, as_base64: bool) -> dict[str, Any]:
    """The RUN RESULT of a distributed RUN, computed in a fresh worker process."""
    job = {"request": request.model_dump(mode="json", by_alias=True), "limits": dataclasses.asdict(limits),
           "run_id": run_id, "as_base64": as_base64}
    with tempfile.TemporaryFile("w+") as log:
        worker = subprocess.Popen([sys.executable, "-m", "nncards.execute.distributed"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=log, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in worker.stdout] + [lines.put(None)],
                         daemon=True).start()
        try:
            worker.stdin.write(json.dumps(job) + "\n")
            worker.stdin.flush()
            while True:
                if observer.cancelled():
                    worker.stdin.write(CANCEL + "\n")
                    worker.stdin.flush()
                try:
                    line = lines.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if line is None:
                    log.seek(0)
                    return _worker_died(run_id, worker.wait(), log.read())
                kind, data = json.loads(line)
                if kind == "result":
                    return data
                getattr(observer, kind)(*data)
        finally:
            worker.kill()
            worker.wait()


def _worker_died(run_id: str, exitcode: int, log: str) -> dict[str, Any]:
    last = [line for line in log.strip().splitlines() if line.strip()][-1:] or ["no message"]
    return {"run_id": run_id, "status": "failed", "steps": [], "layers": {}, "model": None,
            "error": {"code": "run_failed", "message": f"The distributed run's worker process ended without "
                      f"a result (exit code {exitcode}): {last[0]}"}}


if __name__ == "__main__":
    worker_main()
