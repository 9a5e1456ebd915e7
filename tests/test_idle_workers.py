"""TensorFlow workers start with the first validation or run and stop once idle; the server stays light."""

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


def run_once(server) -> dict:
    request = {"graph": bn_graph([2]), "steps": [{"kind": "call", "inputs": {"x": [[1.0, 2.0]]}}]}
    answer = server.client.post("/runs?wait=true", json=request, timeout=300)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_workers_start_when_needed_stop_when_idle_and_start_again(tmp_path):
    server = LiveServer(tmp_path, "--workers", "1", "--worker-idle-seconds", str(IDLE_SECONDS),
                        "--max-wait-seconds", "300").start()
    try:
        assert server.client.get("/cards").status_code == 200
        assert not server.spawned_workers(), "no TensorFlow worker before it is needed"

        assert run_once(server)["status"] == "succeeded"
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
