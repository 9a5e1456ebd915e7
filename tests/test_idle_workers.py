"""TensorFlow workers start with the first validation or run (as its request arrives) and stop once
idle; the server stays light."""

import http.client
import json
import time
from pathlib import Path

from conftest import LiveServer
from graphs import bn_graph

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


def run_once(server) -> dict:
    answer = server.client.post("/runs?wait=true", json=REQUEST, timeout=300)
    assert answer.status_code == 200, answer.text
    return answer.json()


def run_with_body_held_back(server) -> dict:
    """A run whose body is sent only once the validation and run workers have started: they start
    as its request arrives, importing TensorFlow while a large body would still be coming."""
    body = json.dumps(REQUEST).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
    try:
        connection.putrequest("POST", "/api/v1/runs?wait=true")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body[:1])
        deadline = time.monotonic() + 30
        while len(server.spawned_workers()) < 2:
            assert time.monotonic() < deadline, server.children()
            time.sleep(0.1)
        connection.send(body[1:])
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
        assert server.spawned_workers()  # the run worker (the validation worker may have stopped already)
        deadline = time.monotonic() + IDLE_SECONDS + 20
        while server.spawned_workers() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not server.spawned_workers(), server.children()
        assert resident_mib([server.process.pid, *server.children()]) < LIGHT_MIB

        assert run_once(server)["status"] == "succeeded"  # both start again
        assert "stops after" in server.log()
    finally:
        server.stop()
