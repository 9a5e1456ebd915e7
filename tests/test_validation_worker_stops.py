"""A validation worker that stops at a graph, against a real `nncards serve`: the answer says how.

Killed by SIGKILL (the out-of-memory killer's signal) the graph needs more memory than the server
has; crashed (SIGSEGV, SIGABRT) the graph cannot be built. A validation is tried twice, so the
worker is killed at both tries, each time while it starts with the validation waiting for it.
A worker that died while idle does not count as one of the next validation's tries.
"""

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from conftest import LiveServer, wait_until
from test_server import assert_envelope

from graphs import bn_graph


def kill_each_try(server: LiveServer, answer, how: signal.Signals, spared: set[int]) -> httpx.Response:
    """The answer of a request whose graph's validation waits for a validation worker, once the
    worker of each of its two tries is killed with `how` (`spared`: other workers, left alone)."""
    killed = set()
    for attempt in (1, 2):
        (worker,) = wait_until(lambda: server.spawned_workers() - killed - spared, 60,
                               f"the validation worker of try {attempt} to start")
        os.kill(worker, how)
        killed.add(worker)
    return answer.result()


def niced(pid: int) -> bool:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[16]) > 0
    except (OSError, IndexError):  # the process ended while being looked at
        return False


def spawned_alive(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()  # a zombie's is empty
    except OSError:
        return False


def test_a_stopped_validation_worker_is_named_memory_or_crash(tmp_path):
    server = LiveServer(tmp_path / "server", "--workers", "1").start()
    api = server.client
    seen: set[int] = set()

    def validated(graph):
        return api.post("/graphs/validate", json=graph, timeout=300)

    try:
        with ThreadPoolExecutor(1) as background:
            assert not server.spawned_workers()
            killed = kill_each_try(server, background.submit(validated, bn_graph([2])), signal.SIGKILL, set())
            assert killed.status_code == 200, killed.text
            assert killed.json()["valid"] is False
            (problem,) = killed.json()["errors"]
            assert problem["code"] == "too_large", problem
            assert "SIGKILL" in problem["message"] and "more memory than the server has" in problem["message"]

            crashed = kill_each_try(server, background.submit(validated, bn_graph([3])), signal.SIGSEGV, set())
            assert crashed.status_code == 200 and crashed.json()["valid"] is False, crashed.text
            (problem,) = crashed.json()["errors"]
            assert problem["code"] == "param_invalid", problem
            assert "crashed the validation process 2 times (SIGSEGV)" in problem["message"]
            assert "memory" not in problem["message"]

            # the graph killed before is validated by the next worker (a failure is not cached)
            again = validated(bn_graph([2]))
            assert again.status_code == 200 and again.json()["valid"] is True, again.text
            (idle,) = server.spawned_workers()
            seen |= {idle}
            # A worker that died while idle is replaced for the next validation without counting as
            # one of its tries: here a run's, which is killed twice more to answer the crash, 422.
            os.kill(idle, signal.SIGKILL)
            wait_until(lambda: idle not in server.children(), 30, "the killed worker to be reaped")
            run = {"graph": bn_graph([4]), "steps": [{"kind": "call", "inputs": {"x": [[1.0, 2.0, 3.0, 4.0]]}}]}
            answer = background.submit(api.post, "/runs", json=run, timeout=300)
            # the run worker (started as the run request arrives) is the one that lowers its priority
            (run_worker,) = wait_until(lambda: {pid for pid in server.spawned_workers() if niced(pid)}, 60,
                                       "the run worker to start")
            aborted = kill_each_try(server, answer, signal.SIGABRT, {run_worker})
        error = assert_envelope(aborted, 422, "graph_invalid")
        (problem,) = error["errors"]
        assert problem["code"] == "param_invalid" and "(SIGABRT)" in problem["message"], problem
        assert "SIGABRT" in error["message"]
        seen |= server.spawned_workers()
        assert server.process.poll() is None
    finally:
        server.stop()
    wait_until(lambda: not any(spawned_alive(pid) for pid in seen), 30, "the workers to stop with the server")
