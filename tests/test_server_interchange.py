"""Models in and out over HTTP, against a real `nncards serve`: `POST /graphs/import` and the
`.keras` download of a finished run."""

import io
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import h5py
import httpx
import keras
import numpy as np
import pytest
from conftest import LiveServer, wait_until

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


def undefined_variable_length_kind(config: str) -> bytes:
    """A Keras 2 file whose `model_config` attribute is typed variable-length of a kind HDF5 does
    not define (2; 0 is a sequence, 1 a string): HDF5 1.14 crashes (SIGSEGV) reading it."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        file.attrs["model_config"] = config
    data = bytearray(buffer.getvalue())
    datatype = data.index(b"model_config\0") + 16  # the attribute's datatype follows its name, NUL-padded to 8s
    # version 1 of class 9 (variable-length), of kind 1 (string)
    assert data[datatype] == 0x19 and data[datatype + 1] & 0x0F == 1, "the attribute is not laid out as expected"
    data[datatype + 1] = data[datatype + 1] & 0xF0 | 2
    return bytes(data)


def test_a_file_crashing_the_reader_is_a_bad_request_and_a_killed_reader_too_large(tmp_path):
    config = small_model().to_json()
    crafted = undefined_variable_length_kind(config)
    (tmp_path / "crafted.h5").write_bytes(crafted)
    # the premise: the HDF5 library itself crashes on the file (a library that no longer does needs another file)
    direct = subprocess.run([sys.executable, "-c", "import sys; from nncards.interchange.keras2 import read_hdf5; "
                             "read_hdf5(open(sys.argv[1], 'rb').read(), 2**20)", str(tmp_path / "crafted.h5")],
                            capture_output=True)
    assert direct.returncode == -signal.SIGSEGV, direct.stderr.decode()[-500:]

    server = LiveServer(tmp_path / "server").start()
    api = server.client

    def imported(body, content_type="application/json") -> httpx.Response:
        return api.post("/graphs/import", content=body, headers={"content-type": content_type}, timeout=300)

    try:
        assert not server.spawned_workers()
        # the interchange worker killed by SIGKILL, the out-of-memory killer's signal, while it starts
        with ThreadPoolExecutor(1) as background:
            answer = background.submit(imported, config)
            (worker,) = wait_until(server.spawned_workers, 60, "the interchange worker to start")
            os.kill(worker, signal.SIGKILL)
            killed = answer.result()
        assert killed.status_code == 413 and killed.json()["error"]["code"] == "too_large", killed.text
        assert "more memory than the server has" in killed.json()["error"]["message"]

        crash = imported(crafted, "application/x-hdf5")
        assert crash.status_code == 400, crash.text
        error = crash.json()["error"]
        assert error["code"] == "bad_request" and "crashed the process reading it (SIGSEGV)" in error["message"]
        assert "memory" not in error["message"]

        assert imported(config).status_code == 200  # a new worker reads the next file
        # a worker that dies while idle is not the next file's doing: it is started again for it
        (idle,) = server.spawned_workers()
        os.kill(idle, signal.SIGKILL)
        wait_until(lambda: idle not in server.children(), 30, "the killed worker to be reaped")
        again = imported(config)
        assert again.status_code == 200, again.text
        assert server.process.poll() is None
    finally:
        server.stop()


def test_the_command_line_refuses_a_file_crashing_the_reader_and_lives(tmp_path):
    """`nncards import` reads the file in a worker as the server does: a crafted HDF5 file that
    crashes the HDF5 library (see the test above for the premise) is refused with the server's
    envelope and exit code 1, where the command itself used to die of SIGSEGV."""
    (tmp_path / "crafted.h5").write_bytes(undefined_variable_length_kind(small_model().to_json()))
    done = subprocess.run([sys.executable, "-m", "nncards.cli", "import", str(tmp_path / "crafted.h5")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-500:]
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "bad_request" and "crashed the process reading it (SIGSEGV)" in error["message"]
