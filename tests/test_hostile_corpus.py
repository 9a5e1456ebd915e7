"""A corpus of bad input (tests/corpus/), sent over HTTP to a real server and through the Python API.

Each file gets its precise answer: a 4xx with the error envelope, `valid: false` with the
problems that name the culprit, or a `failed` run with the right code. Raw files are sent byte
for byte, so JSON's NaN tokens and a truncated document reach the server as they are.
"""

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from conftest import LiveServer
from graphs import edge, node

import nncards

CORPUS = Path(__file__).parent / "corpus"
BODY_LIMIT = 1_000_000
JSON = {"content-type": "application/json"}

# File → the (code, node, port) of every problem `POST /graphs/validate` must report.
INVALID_GRAPHS = {
    "wrong_port_type.json": {("type_mismatch", "bn", "input")},
    "cycle.json": {("cycle", "a", None), ("cycle", "b", None)},  # x feeds nothing: that is allowed
    "duplicate_ids.json": {("duplicate_node_id", "x", None)},
    "unicode_ids.json": {("invalid_node_id", "нейрон✓", None)},
    "input_too_large.json": {("too_large", "x", "shape")},
    "dense_too_large.json": {("too_large", "d", None), ("too_large", "d", "output")},  # kernel, bias; output
    # the Output after it is not reported unwired too: the unknown card is the one problem
    "lambda_card.json": {("unknown_card", "l", None)},
    "lambda_initializer.json": {("param_invalid", "bn", "gamma_initializer")},
    "keras_path_regularizer.json": {("param_invalid", "bn", "beta_regularizer")},
    "nan_tokens_params.json": {("param_invalid", "bn", "momentum"), ("param_invalid", "bn", "epsilon"),
                               ("param_invalid", "bn", "renorm_momentum")},
    "huge_numbers_params.json": {("param_invalid", "bn", "momentum"), ("param_invalid", "bn", "epsilon")},
    "huge_axis.json": {("param_out_of_range", "bn", "axis")},
}

# File, route → status, top-level code, the JSON path (`port`) of the first problem where one applies.
REFUSED_REQUESTS = [
    ("truncated.json", "/graphs/validate", 400, "bad_request", None),
    ("not_a_graph.json", "/graphs/validate", 422, "request_invalid", ""),
    ("edge_missing_target.json", "/graphs/validate", 422, "request_invalid", "edges/0/target"),
    ("run_optimizer_object.json", "/runs", 422, "request_invalid", "steps/0/optimizer/beta_1"),
    ("run_optimizer_path.json", "/runs", 422, "request_invalid", "steps/0/optimizer/name"),
    ("run_loss_path.json", "/runs", 422, "request_invalid", "steps/0/loss"),
    ("run_metric_object.json", "/runs", 422, "request_invalid", "steps/0/metrics/0"),
]

# Run files whose graph is fine but whose arrays are not: a failed run, `array_invalid` on Input `x`.
BAD_ARRAYS = ["run_array_wrong_shape.json", "run_array_wrong_dtype.json", "run_array_ragged.json",
              "run_base64_short.json"]


def raw(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def problems(result: dict) -> set:
    return {(e["code"], e.get("node"), e.get("port")) for e in result["errors"]}


def assert_envelope(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


def chain_graph(length: int) -> dict:
    """Input → (length - 2) Dense layers → Output, one after the other."""
    ids = ["x", *(f"dense{i}" for i in range(length - 2)), "y"]
    nodes = [node("x", "input", shape=[4]), *(node(i, "layer_Dense", units=4) for i in ids[1:-1]), node("y", "output")]
    return {"nodes": nodes, "edges": [edge(a, "output", b, "input") for a, b in zip(ids, ids[1:])]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # --warm-up: the workers import TensorFlow while the first requests are made, not within them.
    server = LiveServer(tmp_path_factory.mktemp("corpus"), "--workers", "1", "--warm-up",
                        "--max-body-bytes", str(BODY_LIMIT)).start()
    yield server
    server.stop()


@pytest.fixture
def api(server) -> httpx.Client:
    return server.client


def test_every_corpus_file_is_exercised():
    used = {*INVALID_GRAPHS, *(name for name, *_ in REFUSED_REQUESTS), *BAD_ARRAYS, "run_nan_tokens_array.json"}
    assert used == {path.name for path in CORPUS.iterdir()}


@pytest.mark.parametrize("name", sorted(INVALID_GRAPHS))
def test_invalid_graph_names_its_culprits(api, name):
    answer = api.post("/graphs/validate", content=raw(name), headers=JSON)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["valid"] is False
    assert problems(result) == INVALID_GRAPHS[name]
    # The Python API answers the very same, JSON's NaN tokens included.
    assert nncards.validate(json.loads(raw(name))) == result


def test_non_finite_params_are_received_as_strings(api):
    result = api.post("/graphs/validate", content=raw("nan_tokens_params.json"), headers=JSON).json()
    assert {e["port"]: e["received"] for e in result["errors"]} == {
        "momentum": "NaN", "epsilon": "Infinity", "renorm_momentum": "-Infinity"}
    huge = api.post("/graphs/validate", content=raw("huge_numbers_params.json"), headers=JSON).json()
    assert {e["port"]: e["received"] for e in huge["errors"]} == {"momentum": "Infinity", "epsilon": "-Infinity"}
    axis = api.post("/graphs/validate", content=raw("huge_axis.json"), headers=JSON).json()
    assert [e["received"] for e in axis["errors"]] == [10**30]


def test_too_large_is_found_from_shapes_alone(api):
    """A 10^4 x 10^9 kernel (40 TB) is refused from its shape: nothing is allocated, the server lives on."""
    result = api.post("/graphs/validate", content=raw("dense_too_large.json"), headers=JSON).json()
    assert {tuple(e["received"]) for e in result["errors"]} == {(10_000, 10**9), (10**9,), (None, 10**9)}
    assert result["shapes"]["x"] == {"output": [None, 10_000]}
    run = {"graph": json.loads(raw("input_too_large.json")), "steps": []}
    error = assert_envelope(api.post("/runs", json=run), 413, "too_large")
    assert error["errors"][0]["received"] == [100_000, 100_000]
    assert api.get("/health").status_code == 200


@pytest.mark.parametrize("name, route, status, code, port", REFUSED_REQUESTS)
def test_malformed_request_is_refused(api, name, route, status, code, port):
    error = assert_envelope(api.post(route, content=raw(name), headers=JSON), status, code)
    if port is not None:
        assert error["errors"][0]["port"] == port
        assert all(e["code"] == "request_invalid" for e in error["errors"])


def test_graph_that_names_no_registered_card_cannot_run(api):
    run = {"graph": json.loads(raw("lambda_card.json")), "steps": []}
    error = assert_envelope(api.post("/runs", json=run), 422, "graph_invalid")
    assert problems(error) == INVALID_GRAPHS["lambda_card.json"]


@pytest.mark.parametrize("name", BAD_ARRAYS)
def test_arrays_that_disagree_with_the_input_fail_the_run(api, name):
    answer = api.post("/runs", params={"wait": "true"}, content=raw(name), headers=JSON)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["status"] == "failed" and result["steps"] == []
    assert result["error"]["code"] == "array_invalid"
    assert [(e["code"], e["node"]) for e in result["error"]["errors"]] == [("array_invalid", "x")]
    assert api.get(f"/runs/{result['run_id']}").json() == result


def test_python_run_fails_the_same_way():
    result = nncards.run(json.loads(raw("run_array_wrong_shape.json")))
    assert result["status"] == "failed" and result["error"]["code"] == "array_invalid"
    assert "[1, 3]" in result["error"]["message"]


def test_nan_tokens_in_arrays_go_through(api):
    result = api.post("/runs", params={"wait": "true"}, content=raw("run_nan_tokens_array.json"), headers=JSON).json()
    assert result["status"] == "succeeded"
    outputs = result["steps"][0]["outputs"]["y"]
    assert outputs[0] == ["NaN", "Infinity"]  # inference-mode BN keeps non-finite values non-finite
    assert outputs[1] == pytest.approx([1 / (1 + 1e-3) ** 0.5, 2 / (1 + 1e-3) ** 0.5], rel=1e-5)


def test_wrong_content_type_and_unknown_routes(api, server):
    assert_envelope(api.post("/graphs/validate", content=raw("cycle.json"), headers={"content-type": "text/plain"}),
                    400, "bad_request")
    assert_envelope(api.post("/graphs/validate", content=raw("cycle.json"),
                             headers={"content-type": "application/x-www-form-urlencoded"}), 400, "bad_request")
    assert_envelope(api.get("/graphs"), 404, "not_found")
    assert_envelope(api.post("/cards/layer_Dense/run"), 404, "not_found")
    assert_envelope(httpx.get(server.url + "/api/v2/cards"), 404, "not_found")
    error = assert_envelope(api.put("/runs"), 405, "method_not_allowed")
    assert error["message"]


@pytest.mark.parametrize("run_id", ["..", "../runs.sqlite3", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2fruns.sqlite3",
                                    "runs.sqlite3", "%00", "%ED%A0%80"])
def test_run_ids_cannot_reach_files(server, run_id):
    for path in (f"/runs/{run_id}", f"/runs/{run_id}/events"):
        response = httpx.get(server.api + path)  # raw path, not normalized by the client
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "not_found"


def test_oversized_bodies_are_too_large(api):
    body = b'{"nodes": [' + b" " * BODY_LIMIT + b"]}"
    error = assert_envelope(api.post("/graphs/validate", content=body, headers=JSON), 413, "too_large")
    assert str(BODY_LIMIT) in error["message"]

    def chunks():  # no Content-Length: the limit is counted while reading
        yield b'{"nodes": ['
        for _ in range(BODY_LIMIT // 10_000 + 1):
            yield b" " * 10_000

    assert_envelope(api.post("/graphs/validate", content=chunks(), headers=JSON), 413, "too_large")
    assert api.get("/health").status_code == 200


def test_thousand_node_chain_validates_in_reasonable_time(api):
    graph = chain_graph(1_000)
    started = time.perf_counter()
    result = api.post("/graphs/validate", json=graph).json()
    seconds = time.perf_counter() - started
    assert result["valid"] is True, result["errors"][:3]
    assert len(result["shapes"]) == 999 and result["shapes"]["dense997"] == {"output": [None, 4]}
    assert seconds < 15, seconds


def test_data_directory_holds_only_the_database(server):
    names = {path.name for path in server.data_dir.iterdir()}
    assert names <= {"runs.sqlite3", "runs.sqlite3-wal", "runs.sqlite3-shm", "server.log", "server.lock", "runs"}
    # arrays: runs/<the server's own hex run id>/[request/]<n>.npy, nothing a request could name
    arrays = ["/".join(path.relative_to(server.data_dir).parts) for path in (server.data_dir / "runs").rglob("*")
              if path.is_file()]
    assert all(re.fullmatch(r"runs/[0-9a-f]{32}/(request/)?\d+\.npy", path) for path in arrays), arrays
