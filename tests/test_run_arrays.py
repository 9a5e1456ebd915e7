"""Arrays of a run: nested lists are read by NumPy in C (the element-wise walk only for the strings
of non-finite numbers), and NumPy arrays are taken as they are from Python."""

import math
import time

import numpy as np
import pytest

from nncards.contract import arrays
from nncards.contract.run import Run


def test_nested_lists_decode_with_their_kind():
    assert arrays.decode([[1, 2], [3, 4]]).dtype.kind == "i"
    assert arrays.decode([[1.5, 2], [3, 4]]).dtype.kind == "f"
    assert arrays.decode([True, False]).dtype.kind == "b"
    decoded = arrays.decode([[1.0, "NaN"], ["Infinity", "-Infinity"]])
    assert decoded.dtype.kind == "f" and math.isnan(decoded[0, 1]) and decoded[1, 0] == math.inf


@pytest.mark.parametrize("value, message", [([[1.0], [2.0, 3.0]], "ragged"), ([1.0, None], "null"),
                                            ([1.0, "1.5"], "not a number"), ([1.0, {}], "only numbers")])
def test_malformed_lists_are_refused(value, message):
    with pytest.raises(arrays.ArrayError, match=message):
        arrays.decode(value)


def test_numpy_arrays_are_taken_as_they_are():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    run = Run.model_validate({"graph": {"nodes": [], "edges": []},
                              "steps": [{"kind": "predict", "inputs": {"x": x}}]})
    assert run.steps[0].inputs["x"] is x and arrays.decode(x) is x and arrays.count_elements(x) == 6
    assert "ndarray" not in str(Run.model_json_schema())


def test_the_server_keeps_request_arrays_as_files_beside_the_run(live_server):
    """Lists, base64 blocks and JSON's NaN token (read by the fallback parser) arrive as .npy files in
    the run's folder; the run record holds the request without them; the run uses them."""
    import base64
    import json
    import sqlite3

    from graphs import bn_graph

    x = np.array([[1.0, 2.0], [3.0, 5.0]])
    gamma = np.array([2.0, 3.0], dtype=np.float32)
    body = json.dumps({"graph": bn_graph([2]), "weights": {"bn": {"gamma": {
        "dtype": "float32", "shape": [2], "base64": base64.b64encode(gamma.tobytes()).decode()}}},
        "steps": [{"kind": "call", "inputs": {"x": x.tolist()}},
                  {"kind": "call", "inputs": {"x": [[float("nan"), 1.0]]}}]})
    assert "NaN" in body
    answer = live_server.client.post("/runs", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 201, answer.text
    run_id, deadline = answer.json()["run_id"], time.monotonic() + 300  # the first run imports TensorFlow
    while (result := live_server.client.get(f"/runs/{run_id}?arrays=base64").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert result["status"] == "succeeded", result["error"]
    assert arrays.decode(result["layers"]["bn"]["weights"]["gamma"]).tolist() == gamma.tolist()

    folder = live_server.data_dir / "runs" / result["run_id"] / "request"
    stored = [np.load(folder / f"{n}.npy") for n in range(3)]
    assert stored[0].tolist() == gamma.tolist() and stored[1].tolist() == x.tolist()
    assert math.isnan(stored[2][0, 0]) and stored[2][0, 1] == 1.0
    with sqlite3.connect(live_server.data_dir / "runs.sqlite3") as db:
        request = json.loads(db.execute("SELECT request FROM runs WHERE run_id = ?", (result["run_id"],)).fetchone()[0])
    assert request["weights"] == {"bn": {"gamma": []}} and request["steps"][0]["inputs"] == {"x": []}
