"""TensorFlow workers start with the first validation or run (as its request arrives) and stop once
idle; the server stays light. A cold run imports TensorFlow once: its run worker validates it."""

import http.client
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from conftest import LiveServer
from graphs import bn_graph
from test_server import assert_envelope

IDLE_SECONDS = 2
LIGHT_MIB = 300


def resident_mib(pids) -> float:
    total = 0
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        # A process that has exited but not been reaped yet has no VmRSS line: it holds no memory.
        total += sum(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return total / 1024


REQUEST = {"graph": bn_graph([2]), "steps": [{"kind": "call", "inputs": {"x": [[1.0, 2.0]]}}]}
VALIDATION_WORKERS_START = "the validation workers start"  # what the server logs when it starts them


def with_tensorflow(pids) -> set[int]:
    """The processes among `pids` that have loaded TensorFlow's library."""
    loaded = set()
    for pid in pids:
        try:
            if b"libtensorflow" in Path(f"/proc/{pid}/maps").read_bytes():
                loaded.add(pid)
        except OSError:
            continue  # it has exited
    return loaded


def run_once(server) -> dict:
    answer = server.client.post("/runs?wait=true", json=REQUEST, timeout=300)
    assert answer.status_code == 200, answer.text
    return answer.json()


def run_with_body_held_back(server, after_body: Callable[[set[int]], None] = lambda workers: None) -> dict:
    """A run whose body is sent only once its run worker has started: it starts as the request
    arrives, importing TensorFlow while a large body would still be coming. `after_body` is given
    the worker processes once the body is sent."""
    body = json.dumps(REQUEST).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
    try:
        connection.putrequest("POST", "/api/v1/runs?wait=true")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body[:1])
        deadline = time.monotonic() + 30
        while not server.spawned_workers():
            assert time.monotonic() < deadline, server.children()
            time.sleep(0.1)
        connection.send(body[1:])
        after_body(server.spawned_workers())
        answer = connection.getresponse()
        assert answer.status == 200
        return json.loads(answer.read())
    finally:
        connection.close()


def test_workers_start_when_needed_stop_when_idle_and_start_again(tmp_path):
    server = LiveServer(tmp_path, "--workers", "1", "--worker-idle-seconds", str(IDLE_SECONDS),
                        "--max-wait-seconds", "300").start()
    try:
        assert server.client.get("/cards").status_code == 200
        assert not server.spawned_workers(), "no TensorFlow worker before it is needed"

        assert run_with_body_held_back(server)["status"] == "succeeded"
        assert len(with_tensorflow(server.spawned_workers())) == 1, server.children()  # the run worker
        assert VALIDATION_WORKERS_START not in server.log()  # a cold run imports TensorFlow once
        deadline = time.monotonic() + IDLE_SECONDS + 20
        while server.spawned_workers() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not server.spawned_workers(), server.children()
        assert resident_mib([server.process.pid, *server.children()]) < LIGHT_MIB

        # Validation errors are still answered before the run is accepted, by the run worker.
        invalid = {**REQUEST, "graph": bn_graph([2], {"axis": 5})}
        error = assert_envelope(server.client.post("/runs", json=invalid, timeout=300), 422, "graph_invalid")
        assert error["errors"][0]["node"] == "bn"
        assert len(server.client.get("/runs").json()["runs"]) == 1  # not accepted

        assert run_once(server)["status"] == "succeeded"  # the run worker starts again
        assert "stops after" in server.log()
        assert VALIDATION_WORKERS_START not in server.log()
        assert server.client.post("/graphs/validate", json=bn_graph([3])).json()["valid"]
        assert VALIDATION_WORKERS_START in server.log()  # validations alone go to the validation workers
    finally:
        server.stop()


def test_a_run_whose_run_worker_dies_while_validating_it_is_validated_by_the_validation_workers(tmp_path):
    server = LiveServer(tmp_path, "--workers", "1", "--max-wait-seconds", "300").start()

    def kill_while_importing(workers):
        time.sleep(0.5)  # the graph is sent to the run worker, which imports TensorFlow for seconds yet
        for pid in workers:
            os.kill(pid, signal.SIGKILL)

    try:
        assert run_with_body_held_back(server, kill_while_importing)["status"] == "succeeded"
        assert VALIDATION_WORKERS_START in server.log() and "stopped unexpectedly" in server.log()
    finally:
        server.stop()
