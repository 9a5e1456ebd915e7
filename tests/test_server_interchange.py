"""Models in and out over HTTP, against a real `nncards serve`: `POST /graphs/import` and the
`.keras` download of a finished run."""

import io

import httpx
import keras
import numpy as np
import pytest
from conftest import LiveServer

from test_interchange import ROUND_TRIP, comparable


MAX_BODY_BYTES = 2**20


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("interchange"), "--max-body-bytes", str(MAX_BODY_BYTES)).start()
    yield server.client
    server.stop()


def small_model():
    x = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(3, activation="relu", name="hidden")(x)
    return keras.Model(x, keras.layers.BatchNormalization(momentum=0.9, name="bn")(hidden))


def test_import_a_keras_file_as_body_or_form_with_weights(api, tmp_path):
    model = small_model()
    model.save(tmp_path / "small.keras")
    data = (tmp_path / "small.keras").read_bytes()
    graph = api.post("/graphs/import", content=data, headers={"content-type": "application/octet-stream"})
    assert graph.status_code == 200, graph.text
    nodes = {n["id"]: n for n in graph.json()["nodes"]}
    assert nodes["hidden"]["params"] == {"units": 3, "activation": "relu"} and nodes["bn"]["params"] == {"momentum": 0.9}
    run = api.post("/graphs/import", params={"weights": "true"}, files={"file": ("small.keras", io.BytesIO(data))})
    assert run.status_code == 200, run.text
    assert run.json()["graph"] == graph.json()
    assert set(run.json()["weights"]["bn"]) == {"gamma", "beta", "moving_mean", "moving_variance"}
    config = api.post("/graphs/import", content=model.to_json(), headers={"content-type": "application/json"})
    assert config.json() == graph.json()


def test_import_refusals_are_envelopes(api):
    y = keras.Input((3,), name="y")
    lambdas = keras.Model(y, keras.layers.Lambda(lambda t: t + 1, name="plus")(y))
    refused = api.post("/graphs/import", content=lambdas.to_json(), headers={"content-type": "application/json"})
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "import_unsupported"
    assert [(p["code"], p["node"], p["received"]) for p in error["errors"]] == [("unsupported_layer", "plus", "Lambda")]
    for body in (b"not a model", b"PK\x03\x04broken", b'{"class_name": "Functional", "config": {"layers": [3]}}'):
        answer = api.post("/graphs/import", content=body, headers={"content-type": "application/octet-stream"})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "bad_request", answer.text


def test_import_a_keras2_h5_file_and_refuse_broken_or_oversized_ones(api, tmp_path):
    import tf_keras

    x = tf_keras.Input((4,), name="x")
    hidden = tf_keras.layers.Dense(3, name="hidden")(x)
    normalized = tf_keras.layers.BatchNormalization(axis=[1], virtual_batch_size=2, name="bn")(hidden)
    legacy = tf_keras.Model(x, normalized)
    legacy.save(tmp_path / "legacy.h5")
    legacy.save_weights(tmp_path / "weights.h5")
    data = (tmp_path / "legacy.h5").read_bytes()
    graph = api.post("/graphs/import", content=data, headers={"content-type": "application/x-hdf5"})
    assert graph.status_code == 200, graph.text
    assert {n["id"]: n["params"] for n in graph.json()["nodes"]}["bn"] == {"axis": 1, "virtual_batch_size": 2}
    run = api.post("/graphs/import", params={"weights": "true"}, files={"file": ("legacy.h5", io.BytesIO(data))})
    assert run.status_code == 200, run.text
    assert set(run.json()["weights"]["bn"]) == {"gamma", "beta", "moving_mean", "moving_variance"}
    # a Keras 2 JSON config with the weights its `save_weights` wrote: a RUN, the same as the .h5 file's
    config_and_weights = api.post("/graphs/import", files={
        "file": ("model.json", io.BytesIO(legacy.to_json().encode())),
        "weights_file": ("weights.h5", io.BytesIO((tmp_path / "weights.h5").read_bytes()))})
    assert config_and_weights.status_code == 200, config_and_weights.text
    assert config_and_weights.json() == run.json()
    for broken in (data[:len(data) // 3], data[:8] + bytes(1000)):
        refused = api.post("/graphs/import", content=broken, headers={"content-type": "application/x-hdf5"})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_request", refused.text
    oversized = api.post("/graphs/import", content=data + bytes(MAX_BODY_BYTES),
                         headers={"content-type": "application/x-hdf5"})
    assert oversized.status_code == 413 and oversized.json()["error"]["code"] == "too_large"


def test_download_the_trained_model_of_a_finished_run(api, tmp_path):
    x = np.random.default_rng(1).normal(size=(6, 4)).round(3).tolist()
    run = {"graph": ROUND_TRIP, "seed": 3, "steps": [
        {"kind": "fit", "inputs": {"a": x, "b": x}, "targets": {"y": x, "z": x}, "epochs": 2, "batch_size": 3},
        {"kind": "predict", "inputs": {"a": x, "b": x}}]}
    created = api.post("/runs", json=run, params={"wait": "true"})
    assert created.status_code == 200, created.text
    result = created.json()
    assert result["status"] == "succeeded", result["error"]
    download = api.get(f"/runs/{result['run_id']}/model.keras")
    assert download.status_code == 200 and download.headers["content-type"] == "application/octet-stream"
    (tmp_path / "trained.keras").write_bytes(download.content)
    loaded = keras.saving.load_model(tmp_path / "trained.keras")  # plain Keras, safe mode
    predicted = loaded.predict({"a": np.array(x), "b": np.array(x)}, verbose=0)
    for output in ("y", "z"):
        np.testing.assert_allclose(predicted[output], result["steps"][1]["outputs"][output], atol=1e-5)
    back = api.post("/graphs/import", content=download.content, headers={"content-type": "application/octet-stream"})
    assert comparable(back.json()) == comparable(ROUND_TRIP)
    missing = api.get("/runs/nosuchrun/model.keras")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_a_run_not_yet_finished_has_no_model(api):
    slow = {"graph": ROUND_TRIP, "steps": [{"kind": "fit", "inputs": {"a": [[0.0] * 4] * 64, "b": [[0.0] * 4] * 64},
                                            "targets": {"y": [[0.0] * 4] * 64, "z": [[0.0] * 4] * 64},
                                            "epochs": 200, "batch_size": 1}]}
    run_id = api.post("/runs", json=slow).json()["run_id"]
    try:
        early = api.get(f"/runs/{run_id}/model.keras")
        assert early.status_code == 409 and early.json()["error"]["code"] == "run_not_finished"
    finally:
        api.delete(f"/runs/{run_id}")
