"""The REST server, tested against a real `nncards serve` process on loopback."""

import asyncio
import base64
import json
import time

import httpx
import numpy as np
import pytest
from conftest import LiveServer
from graphs import bn_graph, node

BODY_LIMIT = 300_000
ARRAY_LIMIT = 5_000
NODE_LIMIT = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("server"), "--max-body-bytes", str(BODY_LIMIT),
                        "--max-array-elements", str(ARRAY_LIMIT), "--max-nodes", str(NODE_LIMIT)).start()
    yield server
    server.stop()


@pytest.fixture
def api(server) -> httpx.Client:
    return server.client


def fit_run(epochs, samples=8, batch_size=4):
    x = np.arange(samples * 2, dtype=float).reshape(samples, 2) / 10
    return {"graph": bn_graph([2]), "seed": 1,
            "steps": [{"kind": "fit", "inputs": {"x": x.tolist()}, "targets": {"y": (x * 2).tolist()},
                       "epochs": epochs, "batch_size": batch_size, "shuffle": False}]}


def read_events(api, run_id, last_event_id=None):
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    events = []
    with api.stream("GET", f"/runs/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = {}
        for line in response.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if event:
                    events.append(event)
                    event = {}
                continue
            field, _, value = line.partition(": ")
            event[field] = int(value) if field == "id" else json.loads(value) if field == "data" else value
    return events


def assert_envelope(response, status, code):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


def test_startup_and_health(api):
    assert api.get("/health").json() == {"status": "ok", "version": "0.1.0", "queued": 0, "running": 0,
                                         "oldest_run_seconds": None, "problem": None}


def test_catalogue_etag_and_304(api):
    first = api.get("/cards")
    assert first.status_code == 200
    catalogue = first.json()
    assert catalogue["api_version"] == "1" and catalogue["load_errors"] == []
    assert "layer_BatchNormalization" in {card["id"] for card in catalogue["cards"]}
    etag = first.headers["etag"]
    again = api.get("/cards", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert api.get("/cards", headers={"If-None-Match": '"stale"'}).status_code == 200

    card = api.get("/cards/layer_BatchNormalization")
    assert card.json() == next(c for c in catalogue["cards"] if c["id"] == "layer_BatchNormalization")
    assert card.headers["etag"] != etag
    assert api.get("/cards/layer_BatchNormalization",
                   headers={"If-None-Match": f'"x", {card.headers["etag"]}'}).status_code == 304
    assert_envelope(api.get("/cards/layer_Nothing"), 404, "not_found")

    types = api.get("/types")
    assert {t["id"] for t in types.json()["types"]} >= {"Float", "NeuralNetworkTensor"}
    assert api.get("/types", headers={"If-None-Match": types.headers["etag"]}).status_code == 304


def test_error_envelopes(api, server):
    assert_envelope(api.get("/no/such/route"), 404, "not_found")
    assert_envelope(httpx.get(server.url + "/nothing-here"), 404, "not_found")
    assert_envelope(api.post("/graphs/validate", content=b"{not json", headers={"content-type": "application/json"}),
                    400, "bad_request")
    assert_envelope(api.post("/graphs/validate", content=json.dumps(bn_graph([2])),
                             headers={"content-type": "text/plain"}), 400, "bad_request")
    error = assert_envelope(api.post("/graphs/validate", json={"nodes": [{"id": "x"}], "edges": 3}),
                            422, "request_invalid")
    assert {e["port"] for e in error["errors"]} == {"nodes/0/card", "edges"}
    assert next(e for e in error["errors"] if e["port"] == "edges")["received"] == 3
    assert all(e["code"] == "request_invalid" for e in error["errors"])
    assert_envelope(api.get("/runs", params={"limit": 0}), 422, "request_invalid")
    assert_envelope(api.post("/graphs/validate", content=b"[" + b" " * BODY_LIMIT + b"]",
                             headers={"content-type": "application/json"}), 413, "too_large")
    assert_envelope(api.get("/runs/0123"), 404, "not_found")
    assert_envelope(api.delete("/runs/0123"), 404, "not_found")
    assert_envelope(api.get("/runs/0123/events"), 404, "not_found")


def test_validation_answers_200_for_a_wrong_graph_and_caches(api):
    graph = bn_graph([2], {"momentum": 1.5})
    result = api.post("/graphs/validate", json=graph).json()
    assert result["valid"] is False
    assert [(e["code"], e["node"], e["port"]) for e in result["errors"]] == [("param_out_of_range", "bn", "momentum")]
    good = api.post("/graphs/validate", json=bn_graph([3])).json()
    assert good == {"valid": True, "errors": [], "shapes": {"x": {"output": [None, 3]}, "bn": {"output": [None, 3]}}}
    moved = bn_graph([3])
    moved["nodes"][0]["position"] = {"x": 10, "y": 20}
    started = time.perf_counter()
    assert api.post("/graphs/validate", json=moved).json() == good  # same content: answered from the cache
    assert time.perf_counter() - started < 0.5


def test_run_limits_and_invalid_graph(api):
    too_many = {"graph": {"nodes": [node(f"n{i}", "input", shape=[1]) for i in range(NODE_LIMIT + 1)]}}
    error = assert_envelope(api.post("/runs", json=too_many), 413, "too_large")
    assert error["errors"][0]["code"] == "too_large"
    big = fit_run(1, samples=ARRAY_LIMIT // 4 + 1)
    assert_envelope(api.post("/runs", json=big), 413, "too_large")
    bad = {"graph": bn_graph([2], {"epsilon": -1}), "steps": []}
    error = assert_envelope(api.post("/runs", json=bad), 422, "graph_invalid")
    assert error["errors"][0]["node"] == "bn" and error["errors"][0]["port"] == "epsilon"


def test_fit_streams_one_epoch_event_per_epoch(api):
    created = api.post("/runs", json=fit_run(epochs=3))
    assert created.status_code == 201
    run_id = created.json()["run_id"]
    assert created.json()["status"] == "queued"
    events = read_events(api, run_id)
    ids = [e["id"] for e in events]
    assert ids == list(range(1, len(events) + 1))
    names = [e["event"] for e in events]
    assert names == ["status", "status", "step", "epoch", "epoch", "epoch", "step", "status", "done"]
    assert [e["data"]["status"] for e in events if e["event"] == "status"] == ["queued", "running", "succeeded"]
    epochs = [e["data"] for e in events if e["event"] == "epoch"]
    assert [(e["step"], e["epoch"], e["epochs"]) for e in epochs] == [(0, 1, 3), (0, 2, 3), (0, 3, 3)]
    assert events[2]["data"] == {"index": 0, "kind": "fit", "state": "started"}
    assert events[-1]["data"] == {"status": "succeeded"}

    result = api.get(f"/runs/{run_id}").json()
    assert result["status"] == "succeeded" and result["error"] is None
    assert result["steps"][0]["history"]["loss"] == [e["metrics"]["loss"] for e in epochs]
    assert result["model"] == {"inputs": {"x": [None, 2]}, "outputs": {"y": [None, 2]}, "params": 8}
    assert set(result["layers"]["bn"]["weights"]) == {"gamma", "beta", "moving_mean", "moving_variance"}

    assert read_events(api, run_id) == events  # a late subscriber gets the whole history
    assert read_events(api, run_id, last_event_id=5) == events[5:]
    assert read_events(api, run_id, last_event_id=len(events)) == []


def test_wait_and_base64_arrays(api):
    x = [[1.0, 2.0], [3.0, 5.0]]
    run = {"graph": bn_graph([2]), "steps": [{"kind": "call", "inputs": {"x": x}, "training": True}]}
    answer = api.post("/runs", params={"wait": "true"}, json=run)
    assert answer.status_code == 200
    result = answer.json()
    x = np.array(x)
    expected = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3)
    np.testing.assert_allclose(result["steps"][0]["outputs"]["y"], expected, rtol=1e-5)

    as_base64 = api.get(f"/runs/{result['run_id']}", params={"arrays": "base64"}).json()
    block = as_base64["steps"][0]["outputs"]["y"]
    assert (block["dtype"], block["shape"]) == ("float32", [2, 2])
    decoded = np.frombuffer(base64.b64decode(block["base64"]), "<f4").reshape(2, 2)
    np.testing.assert_array_equal(decoded, np.array(result["steps"][0]["outputs"]["y"], dtype="float32"))
    posted = api.post("/runs", params={"wait": "30", "arrays": "base64"}, json=run).json()
    assert posted["steps"][0]["outputs"]["y"] == block
    assert_envelope(api.get(f"/runs/{result['run_id']}", params={"arrays": "hex"}), 422, "request_invalid")

    slow = api.post("/runs", params={"wait": "0"}, json=fit_run(epochs=2))
    assert slow.status_code == 202 and slow.json()["status"] in ("queued", "running")
    assert_envelope(api.post("/runs", params={"wait": "soon"}, json=run), 422, "request_invalid")


def test_cancel_queued_and_running_runs(api):
    long_run = api.post("/runs", json=fit_run(epochs=100_000, batch_size=1)).json()["run_id"]
    queued = api.post("/runs", json=fit_run(epochs=1)).json()["run_id"]

    cancelled = api.delete(f"/runs/{queued}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["error"]["code"] == "run_cancelled"
    assert cancelled.json()["steps"] == []

    with api.stream("GET", f"/runs/{long_run}/events") as stream:  # wait until it trains
        for line in stream.iter_lines():
            if line == "event: epoch":
                break
    started = time.perf_counter()
    catalogue = api.get("/cards")
    assert catalogue.status_code == 200 and time.perf_counter() - started < 1.0  # fast while training

    stopped = api.delete(f"/runs/{long_run}")
    assert stopped.status_code == 200
    result = stopped.json()
    assert result["status"] == "cancelled" and result["error"]["code"] == "run_cancelled"
    assert result["layers"]["bn"]["weights"]["moving_mean"]  # the state at the stop is kept
    assert read_events(api, long_run)[-1] == {"event": "done", "id": read_events(api, long_run)[-1]["id"],
                                              "data": {"status": "cancelled"}}
    # a finished run is removed (CONTRACT §10), its events with it
    assert api.delete(f"/runs/{long_run}").status_code == 204
    assert api.delete(f"/runs/{queued}").status_code == 204
    assert_envelope(api.get(f"/runs/{queued}"), 404, "not_found")
    assert_envelope(api.get(f"/runs/{long_run}/events"), 404, "not_found")


def test_run_list_newest_first(api):
    page = api.get("/runs", params={"limit": 2}).json()
    assert page["total"] >= 4 and len(page["runs"]) == 2
    everything = api.get("/runs", params={"limit": 1000}).json()["runs"]
    assert page["runs"] == everything[:2]
    created = [r["created_at"] for r in everything]
    assert created == sorted(created, reverse=True)
    assert api.get("/runs", params={"limit": 1, "offset": 1}).json()["runs"] == everything[1:2]


def test_openapi_is_complete(api, server):
    spec = httpx.get(server.url + "/openapi.json").json()
    paths = spec["paths"]
    assert {p: sorted(m) for p, m in paths.items()} == {
        "/api/v1/cards": ["get"], "/api/v1/cards/{card_id}": ["get"], "/api/v1/types": ["get"],
        "/api/v1/graphs/validate": ["post"], "/api/v1/runs": ["get", "post"],
        "/api/v1/runs/{run_id}": ["delete", "get"], "/api/v1/runs/{run_id}/events": ["get"],
        "/api/v1/health": ["get"], "/api/v1/graphs/import": ["post"], "/api/v1/runs/{run_id}/model.keras": ["get"],
    }
    ref = paths["/api/v1/runs"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/ErrorEnvelope")
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert paths["/api/v1/runs"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/Run")
    assert paths["/api/v1/cards"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] \
        .endswith("/Catalogue")


def test_editor_and_card_images(server):
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<html" in page.text.lower()
    image = httpx.get(server.url + "/assets/cards/layer_BatchNormalization.svg")
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/svg+xml")


def test_cors_is_off_by_default_and_configurable(api, tmp_path, monkeypatch):
    from nncards.server.app import create_app
    from nncards.server.settings import Settings

    editor = {"Origin": "http://editor.example"}
    assert "access-control-allow-origin" not in api.get("/cards", headers=editor).headers

    monkeypatch.setenv("NNCARDS_CORS_ORIGINS", "http://editor.example, http://other.example")
    settings = Settings(data_dir=tmp_path)
    assert settings.cors_origins == ["http://editor.example", "http://other.example"]
    app = create_app(settings)  # the catalogue needs no lifespan: no worker is started

    async def ask():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://localhost/api/v1") as client:
            return (await client.get("/cards", headers=editor),
                    await client.options("/runs", headers={**editor, "Access-Control-Request-Method": "POST",
                                                           "Access-Control-Request-Headers": "content-type"}),
                    await client.get("/cards", headers={"Origin": "http://elsewhere.example"}))

    answer, preflight, stranger = asyncio.run(ask())
    assert answer.headers["access-control-allow-origin"] == "http://editor.example"
    assert "etag" in answer.headers["access-control-expose-headers"].lower()
    assert preflight.status_code == 200
    assert "access-control-allow-origin" not in stranger.headers


def test_serve_help_documents_limits_and_environment():
    import subprocess
    import sys

    text = subprocess.run([sys.executable, "-m", "nncards.cli", "serve", "--help"], capture_output=True,
                          text=True, check=True).stdout
    for flag, default in (("--max-nodes", "2000"), ("--max-edges", "10000"), ("--max-array-elements", "16777216"),
                          ("--max-body-bytes", "67108864"), ("--max-run-seconds", "600.0"), ("--host", "127.0.0.1"),
                          ("--port", "8000"), ("--workers", ""), ("--cors-origins", "none")):
        assert flag in text and default in text
    assert "NNCARDS_MAX_RUN_SECONDS" in " ".join(text.split())
