"""Runs on a real two-node Ray cluster through `nncards serve --executor ray`.

The cluster (tests/ray_cluster.py: a head and a worker node of one CPU each, started with
`ray start` in a loopback-only network namespace) is shared by every test here; these tests run
inside its namespace. What happened on the cluster is read from Ray's state API, not from the
server's records.
"""

import os
import signal

import numpy as np
import pytest

import nncards
from conftest import LiveServer, wait_for_epoch, wait_until
from graphs import bn_graph, edge, node
from test_server import read_events

X = np.random.default_rng(0).normal(1.0, 2.0, (24, 4)).astype("float32")
Y = np.random.default_rng(1).normal(0.0, 1.0, (24, 3)).astype("float32")
GRAPH = {
    "schema_version": 1,
    "nodes": [node("x", "input", shape=[4]), node("dense", "layer_Dense", units=3),
              node("bn", "layer_BatchNormalization"), node("y", "output")],
    "edges": [edge("x", "output", "dense", "input"), edge("dense", "output", "bn", "input"),
              edge("bn", "output", "y", "input")],
}


def fit_run(epochs: int, **extra) -> dict:
    return {"graph": GRAPH, "seed": 7, **extra,
            "steps": [{"kind": "fit", "inputs": {"x": X.tolist()}, "targets": {"y": Y.tolist()}, "epochs": epochs,
                       "batch_size": 8, "metrics": ["mae"]},
                      {"kind": "predict", "inputs": {"x": X[:4].tolist()}}]}


TIME_LIMIT_SECONDS = 4


@pytest.fixture(scope="module")
def servers(ray_cluster, tmp_path_factory):
    """Two servers on the cluster, started side by side: one with the default time limit, one with a short one."""
    servers = [LiveServer(tmp_path_factory.mktemp("ray-server"), "--executor", "ray", "--ray-address",
                          ray_cluster.address, *flags, env=ray_cluster.env, startup_timeout=120)
               for flags in ((), ("--max-run-seconds", str(TIME_LIMIT_SECONDS)))]
    starting = [ray_cluster.namespace.submit(live.start) for live in servers]
    try:
        yield [started.result() for started in starting]
    finally:
        for started, live in zip(starting, servers):
            if started.exception() is None:
                ray_cluster.namespace.call(live.stop)


@pytest.fixture(scope="module")
def server(servers):
    return servers[0]


def finished_result(client, run_id, seconds=90.0) -> dict:
    """The run's RUN RESULT once it has finished."""
    return wait_until(lambda: (r := client.get(f"/runs/{run_id}").json())["status"] not in ("queued", "running") and r,
                    seconds, what=f"run {run_id} to finish")


def task_of(cluster, run_id):
    """The run's task as the cluster lists it (its state API learns of a task within a second or so)."""
    tasks = wait_until(lambda: cluster.tasks(f"nncards-run-{run_id}"), seconds=30, what=f"the task of run {run_id}")
    assert len(tasks) == 1, tasks
    return tasks[0]


def worker_pid_of(cluster, run_id) -> int:
    """The process running the run's task; the state API may list the task before its worker reports in."""
    return wait_until(lambda: task_of(cluster, run_id).worker_pid, seconds=30, what=f"the worker of run {run_id}")


@pytest.fixture(autouse=True)
def no_run_outlives_its_test(request):
    """Cancel what a test left queued or running (a failed one, say): a one-CPU node busy with an
    endless fit would otherwise starve every later test of the module."""
    yield
    if not {"server", "servers"} & set(request.fixturenames):
        return

    def cancel_what_is_left(servers):
        for live in servers:
            for run in live.client.get("/runs", params={"limit": 100}).json()["runs"]:
                if run["status"] in ("queued", "running"):
                    live.client.delete(f"/runs/{run['run_id']}")

    # the servers answer only inside the cluster's namespace, where the tests themselves run
    request.getfixturevalue("ray_cluster").namespace.call(cancel_what_is_left, request.getfixturevalue("servers"))


def test_a_fit_on_the_cluster_streams_its_epochs_and_equals_the_local_run(ray_cluster, server):
    run = fit_run(epochs=3)
    created = server.client.post("/runs", json=run)
    assert created.status_code == 201, created.text
    run_id = created.json()["run_id"]
    events = read_events(server.client, run_id)
    epochs = [e["data"] for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3], server.log()[-3000:]
    assert events[-1] == {**events[-1], "event": "done", "data": {"status": "succeeded"}}
    remote = server.client.get(f"/runs/{run_id}").json()
    assert remote["status"] == "succeeded", remote["error"]
    assert wait_until(lambda: task_of(ray_cluster, run_id).state == "FINISHED", what="the task to finish")

    local = nncards.run(run)
    assert local["status"] == "succeeded"
    for key, values in local["steps"][0]["history"].items():
        np.testing.assert_allclose(remote["steps"][0]["history"][key], values, atol=1e-5)
    assert [e["metrics"]["loss"] for e in epochs] == pytest.approx(local["steps"][0]["history"]["loss"], abs=1e-5)
    np.testing.assert_allclose(remote["steps"][1]["outputs"]["y"], local["steps"][1]["outputs"]["y"], atol=1e-5)
    for layer in ("dense", "bn"):
        for name, value in local["layers"][layer]["weights"].items():
            np.testing.assert_allclose(remote["layers"][layer]["weights"][name], value, atol=1e-5)


@pytest.mark.parametrize("resources, port", [({"cpus": 2}, "resources/cpus"), ({"gpus": 1}, "resources/gpus")])
def test_resources_no_node_could_ever_hold_are_refused_at_submission(server, resources, port):
    answer = server.client.post("/runs", json=fit_run(epochs=1, resources=resources))
    assert answer.status_code == 422, answer.text
    problem = answer.json()["error"]["errors"][0]
    assert (problem["code"], problem["port"]) == ("param_invalid", port)


def test_several_workers_are_refused_at_submission_without_a_cluster(live_server):
    """The local executor (no Ray): a multi-worker run could never start there."""
    run = fit_run(epochs=1, distribution={"strategy": "multi_worker_mirrored", "workers": 2})
    answer = live_server.client.post("/runs", json=run)
    assert answer.status_code == 422, answer.text
    problem = answer.json()["error"]["errors"][0]
    assert (problem["code"], problem["port"]) == ("param_invalid", "distribution/workers")
    assert nncards.run(run)["error"]["errors"][0]["port"] == "distribution/workers"


def test_cancel_stops_the_task_on_its_node(ray_cluster, server):
    run_id = server.client.post("/runs", json=fit_run(epochs=100_000)).json()["run_id"]
    wait_for_epoch(server.client, run_id)
    assert wait_until(lambda: task_of(ray_cluster, run_id).state == "RUNNING", what="the task to run")
    cancelled = server.client.delete(f"/runs/{run_id}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert wait_until(lambda: task_of(ray_cluster, run_id).state == "FINISHED", what="the task to stop")


def test_a_lost_worker_process_fails_the_run_with_its_code_and_the_next_run_succeeds(ray_cluster, server):
    run_id = server.client.post("/runs", json=fit_run(epochs=100_000)).json()["run_id"]
    wait_for_epoch(server.client, run_id)
    os.kill(worker_pid_of(ray_cluster, run_id), signal.SIGKILL)
    result = finished_result(server.client, run_id)
    assert result["status"] == "failed"
    assert result["error"]["code"] == "run_node_lost", result["error"]
    following = server.client.post("/runs?wait=120", json=fit_run(epochs=1))
    assert following.status_code == 200, following.text
    assert following.json()["status"] == "succeeded", following.json()["error"]


def test_the_time_limit_kills_the_task_on_its_node(ray_cluster, servers):
    limited = servers[1]
    run_id = limited.client.post("/runs", json=fit_run(epochs=100_000)).json()["run_id"]
    result = finished_result(limited.client, run_id)
    assert (result["status"], result["error"]["code"]) == ("failed", "run_timeout")
    task = wait_until(lambda: (t := task_of(ray_cluster, run_id)).state == "FAILED" and t.worker_pid and t,
                      what="the task to fail on its node")
    with pytest.raises(ProcessLookupError):
        os.kill(task.worker_pid, 0)  # its process on the node is gone


# -- two Ray Train workers under MultiWorkerMirroredStrategy --------------------------------------

# One global batch of 8: worker 0 gets the first 4 rows, worker 1 the last 4, and their
# statistics differ widely. With momentum 0 the moving statistics after one step are the batch
# statistics each layer normalized with.
HALVES = np.concatenate([np.random.default_rng(0).normal(0.0, 1.0, (4, 3)),
                         np.random.default_rng(1).normal(5.0, 3.0, (4, 3))]).astype("float32")


def test_two_workers_train_together_and_synchronized_statistics_span_the_global_batch(ray_cluster, server):
    graph = bn_graph([3], {"momentum": 0.0, "synchronized": True},
                     extra_nodes=[node("solo", "layer_BatchNormalization", momentum=0.0), node("z", "output")],
                     extra_edges=[edge("x", "output", "solo", "input"), edge("solo", "output", "z", "input")])
    run = {"graph": graph, "distribution": {"strategy": "multi_worker_mirrored", "workers": 2},
           "steps": [{"kind": "fit", "inputs": {"x": HALVES.tolist()},
                      "targets": {"y": HALVES.tolist(), "z": HALVES.tolist()}, "batch_size": 8, "shuffle": False,
                      "optimizer": {"name": "sgd", "learning_rate": 1e-9}}]}
    created = server.client.post("/runs", json=run)
    assert created.status_code == 201, created.text
    run_id = created.json()["run_id"]
    result = finished_result(server.client, run_id, seconds=420)  # Ray Train starts its workers afresh
    assert result["status"] == "succeeded", result["error"]
    synchronized, solo = result["layers"]["bn"]["weights"], result["layers"]["solo"]["weights"]
    np.testing.assert_allclose(synchronized["moving_mean"], HALVES.mean(0), atol=1e-5)
    np.testing.assert_allclose(synchronized["moving_variance"], HALVES.var(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(solo["moving_mean"], HALVES[:4].mean(0), atol=1e-5)  # worker 0's own batch
    np.testing.assert_allclose(solo["moving_variance"], HALVES[:4].var(0), rtol=1e-4, atol=1e-5)

    # One process on the whole batch: the synchronized branch's loss is the same, averaged over the workers.
    local = nncards.run({**run, "distribution": None})
    np.testing.assert_allclose(result["steps"][0]["history"]["y_loss"], local["steps"][0]["history"]["y_loss"],
                               rtol=1e-5)
