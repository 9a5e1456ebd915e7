"""Faults: a cancel lands within a batch; `kill -9` during a fit loses no finished run and leaves the database whole;
killed worker processes are replaced and the requests they would have served still answered.

The cancel test reads where training stopped from the layer itself: a batch normalization with
momentum 0 keeps the mean of the last batch it saw as its moving mean, and with batches of one
sample `i` holding the value `i`, that mean is the index of the last batch run.
"""

import os
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import LiveServer, wait_for_epoch
from test_server import assert_envelope, read_events

from graphs import bn_graph

import nncards

SAMPLES = 1_000  # batches per epoch, one sample each


def counting_fit(epochs: int) -> dict:
    x = np.repeat(np.arange(SAMPLES, dtype=float)[:, None], 2, axis=1)
    return {"graph": bn_graph([2], {"momentum": 0.0, "center": False, "scale": False}), "seed": 0,
            "steps": [{"kind": "fit", "inputs": {"x": x.tolist()}, "targets": {"y": x.tolist()}, "epochs": epochs,
                       "batch_size": 1, "shuffle": False, "optimizer": {"name": "sgd", "learning_rate": 0.01}}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("faults"), "--workers", "1", "--warm-up").start()
    yield server
    server.stop()


def test_cancel_mid_fit_stops_within_a_batch(server):
    api = server.client
    started = time.perf_counter()
    run_id = api.post("/runs", json=counting_fit(epochs=1_000)).json()["run_id"]
    first_epoch_at = wait_for_epoch(api, run_id)
    asked = time.perf_counter()
    answer = api.delete(f"/runs/{run_id}")
    answered = time.perf_counter()

    result = answer.json()
    assert answer.status_code == 200 and result["status"] == "cancelled"
    assert result["error"]["code"] == "run_cancelled"
    last_batch = result["layers"]["bn"]["weights"]["moving_mean"]
    assert last_batch[0] == last_batch[1] and float(last_batch[0]).is_integer()
    epochs = [e["data"] for e in read_events(api, run_id) if e["event"] == "epoch"]
    # Epoch 1 ran whole; epoch 2 stopped part-way (Keras reports the partial epoch too): not at an epoch's end.
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert 0 <= last_batch[0] < SAMPLES - 1
    # The answer came in far less than an epoch (>= SAMPLES batches), hence within a batch or so of the flag.
    epoch_seconds = first_epoch_at - started
    assert answered - asked < max(0.5, epoch_seconds / 4), (answered - asked, epoch_seconds)


def test_kill_during_fit_keeps_finished_runs_and_the_database(server):
    api = server.client
    call = {"graph": bn_graph([2]), "steps": [{"kind": "call", "inputs": {"x": [[1.0, 2.0], [3.0, 5.0]]}}]}
    bad = {"graph": bn_graph([2]), "steps": [{"kind": "call", "inputs": {"x": [[1.0, 2.0, 3.0]]}}]}
    finished = [api.post("/runs", params={"wait": "true"}, json=request).json()
                for request in (call, counting_fit(epochs=1), bad)]
    assert [r["status"] for r in finished] == ["succeeded", "succeeded", "failed"]
    before_kill = {r["run_id"]: (r, read_events(api, r["run_id"])) for r in finished}
    older = [r["run_id"] for r in api.get("/runs", params={"limit": 1000}).json()["runs"]]  # the cancel test's too
    interrupted = api.post("/runs", json=counting_fit(epochs=1_000)).json()["run_id"]
    wait_for_epoch(api, interrupted)

    server.stop(clean=False)  # SIGKILL mid-fit: no shutdown code runs
    with sqlite3.connect(server.data_dir / "runs.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("SELECT status FROM runs WHERE run_id = ?", (interrupted,)).fetchone() == ("running",)
    server.start()
    api = server.client

    for run_id, (result, events) in before_kill.items():
        assert api.get(f"/runs/{run_id}").json() == result
        assert read_events(api, run_id) == events
    result = api.get(f"/runs/{interrupted}").json()
    assert result["status"] == "failed"
    assert result["error"]["code"] == "run_interrupted" and "server stopped" in result["error"]["message"]
    assert read_events(api, interrupted)[-1]["data"] == {"status": "failed"}
    assert [r["run_id"] for r in api.get("/runs", params={"limit": 1000}).json()["runs"]] == [interrupted, *older]
    assert api.delete(f"/runs/{interrupted}").status_code == 204  # finished: removed (CONTRACT §10)
    assert_envelope(api.get(f"/runs/{interrupted}"), 404, "not_found")
    with sqlite3.connect(server.data_dir / "runs.sqlite3") as db:  # beside the live server: WAL allows it
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    again = api.post("/runs", params={"wait": "true"}, json=call).json()
    assert again["status"] == "succeeded" and again["steps"] == finished[0]["steps"]


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[16])


def test_killed_workers_are_replaced_and_requests_still_answered(server):
    api = server.client
    assert api.post("/graphs/validate", json=bn_graph([2])).json()["valid"]  # the validation worker is up
    killed = server.spawned_workers()
    assert len(killed) == 2  # the run worker (--workers 1) and the validation worker
    # training yields the CPU to the server's own work: the run worker alone is niced (default 10)
    assert sorted(niceness(pid) for pid in killed) == [0, 10]
    for pid in killed:
        os.kill(pid, signal.SIGKILL)

    graph = bn_graph([5], {"momentum": 0.5})  # not in the server's validation cache
    answer = api.post("/graphs/validate", json=graph)
    assert answer.status_code == 200 and answer.json() == nncards.validate(graph)
    call = {"graph": graph, "steps": [{"kind": "call", "inputs": {"x": [[1.0, 2.0, 3.0, 4.0, 5.0]]}}]}
    assert api.post("/runs", params={"wait": "true"}, json=call).json()["status"] == "succeeded"
    replacements = server.spawned_workers()
    assert len(replacements) == 2 and not replacements & killed
