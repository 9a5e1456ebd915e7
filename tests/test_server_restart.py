"""Runs outlive the server: a restart keeps finished runs and fails the interrupted ones; the time limit."""

from conftest import LiveServer, wait_for_epoch
from test_server import assert_envelope, fit_run, read_events

from graphs import bn_graph


def test_unclean_restart_then_time_limit(tmp_path):
    # A generous time limit until the restart: on a busy machine the long fit's first epoch (its
    # training function traced) may take longer than the 3 s limit the restarted server applies.
    server = LiveServer(tmp_path, "--max-run-seconds", "120").start()
    try:
        api = server.client
        call = {"graph": bn_graph([2]), "steps": [{"kind": "call", "inputs": {"x": [[1.0, 2.0], [3.0, 5.0]]}}]}
        finished = api.post("/runs", params={"wait": "true"}, json=call).json()
        assert finished["status"] == "succeeded"
        finished_events = read_events(api, finished["run_id"])
        running = api.post("/runs", json=fit_run(epochs=100_000, batch_size=1)).json()["run_id"]
        queued = api.post("/runs", json=fit_run(epochs=1)).json()["run_id"]
        wait_for_epoch(api, running)

        server.stop(clean=False)  # SIGKILL: no chance to tidy up
        server = LiveServer(tmp_path, "--max-run-seconds", "3").start()
        api = server.client

        assert api.get(f"/runs/{finished['run_id']}").json() == finished
        assert read_events(api, finished["run_id"]) == finished_events
        for run_id in (running, queued):
            result = api.get(f"/runs/{run_id}").json()
            assert result["status"] == "failed" and result["error"]["code"] == "run_interrupted"
            assert read_events(api, run_id)[-1]["data"] == {"status": "failed"}
        listed = api.get("/runs").json()
        assert listed["total"] == 3
        assert [r["run_id"] for r in listed["runs"]] == [queued, running, finished["run_id"]]
        assert [r["status"] for r in listed["runs"]] == ["failed", "failed", "succeeded"]
        assert all(r["finished_at"] for r in listed["runs"])
        for run_id in (running, queued):  # finished: DELETE removes them (CONTRACT §10)
            assert api.delete(f"/runs/{run_id}").status_code == 204
            assert_envelope(api.get(f"/runs/{run_id}"), 404, "not_found")
        assert api.get("/runs").json()["total"] == 1

        timed = api.post("/runs", params={"wait": "true"}, json=fit_run(epochs=100_000, batch_size=1))
        assert timed.status_code == 200
        assert timed.json()["status"] == "failed" and timed.json()["error"]["code"] == "run_timeout"
        after = api.post("/runs", params={"wait": "true"}, json=call).json()  # a fresh worker took over
        assert after["status"] == "succeeded" and after["steps"] == finished["steps"]
    finally:
        server.stop()
