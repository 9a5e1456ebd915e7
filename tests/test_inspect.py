"""The `inspect` step, a fit's `inspect_every` and its TensorBoard logs.

Statistics are checked against NumPy on the very tensors the same model gives in a `call` step
(each inspected node also feeds an Output), in inference and in training mode.
"""

import base64

import numpy as np
import pytest

import nncards
from nncards.contract.events import InspectEvent
from nncards.execute.entry import execute
from nncards.execute.options import RunOptions
from nncards.ops import normalize_batch_in_training

RNG = np.random.default_rng(7)
X = (RNG.normal(2.0, 3.0, (16, 6, 6, 3)) * (RNG.random((16, 6, 6, 3)) > 0.2)).astype("float32")
LAYERS = [("c", "layer_Conv2D", {"filters": 4, "kernel_size": [3, 3]}),
          ("bn", "layer_BatchNormalization", {"momentum": 0.5}),
          ("r", "layer_ReLU", {})]


def graph(outputs: bool) -> dict:
    """Input → Conv2D → BN → ReLU → Output; with `outputs`, every layer node also feeds an Output."""
    nodes = [{"id": "x", "card": "input", "params": {"shape": [6, 6, 3]}},
             *({"id": i, "card": c, "params": p} for i, c, p in LAYERS), {"id": "y", "card": "output"}]
    ids = ["x", *(i for i, _, _ in LAYERS), "y"]
    edges = [{"source": a, "source_port": "output", "target": b, "target_port": "input"} for a, b in zip(ids, ids[1:])]
    if outputs:
        for node in ("x", "c", "bn"):
            nodes.append({"id": f"out_{node}", "card": "output"})
            edges.append({"source": node, "source_port": "output", "target": f"out_{node}", "target_port": "input"})
    return {"nodes": nodes, "edges": edges}


def expected(tensor: np.ndarray, axis: int) -> dict:
    channels = np.moveaxis(tensor, axis, -1).reshape(-1, tensor.shape[axis]).astype("float64")
    counts, edges = np.histogram(tensor, bins=32, range=(tensor.min(), tensor.max()))
    return {"mean": channels.mean(0), "std": channels.std(0), "min": channels.min(0), "max": channels.max(0),
            "zeros": (channels == 0).mean(0), "counts": counts, "edges": edges}


def assert_statistics(found: dict, tensor: np.ndarray) -> None:
    axis = found["axis"]
    assert found["shape"] == list(tensor.shape) and axis == tensor.ndim - 1
    want = expected(tensor, axis)
    for key in ("mean", "std", "min", "max", "zeros"):
        np.testing.assert_allclose(found["channels"][key], want[key], atol=1e-5, err_msg=key)
    assert found["channels"]["nonfinite"] == [0.0] * tensor.shape[axis]
    np.testing.assert_allclose(found["histogram"]["edges"], want["edges"], atol=1e-4)
    counts = np.asarray(found["histogram"]["counts"])
    assert counts.sum() == tensor.size
    assert np.abs(counts - want["counts"]).sum() <= 2  # a value on a bin edge may fall either side in float32


@pytest.mark.parametrize("training", [False, True])
def test_statistics_equal_numpy_on_the_same_tensors(training):
    step = {"inputs": {"x": X.tolist()}, "training": training}
    result = nncards.run({"graph": graph(outputs=True), "seed": 3,
                          "steps": [{"kind": "call", **step}, {"kind": "inspect", **step}]})
    assert result["status"] == "succeeded", result["error"]
    outputs = result["steps"][0]["outputs"]
    nodes = result["steps"][1]["nodes"]
    assert set(nodes) == {"x", "c", "bn", "r"}
    tensors = {"x": outputs["out_x"], "c": outputs["out_c"], "bn": outputs["out_bn"], "r": outputs["y"]}
    for node, tensor in tensors.items():
        assert_statistics(nodes[node]["outputs"]["output"], np.asarray(tensor, dtype="float32"))
    assert_statistics(nodes["bn"]["input"], np.asarray(outputs["out_c"], dtype="float32"))
    assert nodes["c"]["input"] is None and nodes["c"]["batch_mean"] is None and nodes["c"]["beta"] is None
    assert result["steps"][1]["training"] is training


def test_batch_statistics_are_those_of_normalize_batch_in_training():
    result = nncards.run({"graph": graph(outputs=True), "seed": 3, "steps": [
        {"kind": "call", "inputs": {"x": X.tolist()}},
        {"kind": "inspect", "inputs": {"x": X.tolist()}, "training": True, "nodes": ["bn"]}]})
    entering = np.asarray(result["steps"][0]["outputs"]["out_c"], dtype="float32")
    # The batch variance a BN layer normalizes with is the biased one: the function's unfused
    # route (rank 2, axis 0) gives it; its fused 4-D route would Bessel-correct (BN_SEMANTICS §4.8).
    _, mean, variance = normalize_batch_in_training(entering.reshape(-1, 4), None, None, [0], epsilon=1e-3)
    bn = result["steps"][1]["nodes"]["bn"]
    assert list(result["steps"][1]["nodes"]) == ["bn"]
    np.testing.assert_allclose(bn["batch_mean"], np.asarray(mean), atol=1e-5)
    np.testing.assert_allclose(bn["batch_variance"], np.asarray(variance), atol=1e-5)
    # a training pass with momentum 0.5 moves the moving mean halfway from 0 to the batch mean
    np.testing.assert_allclose(bn["moving_mean"], 0.5 * np.asarray(mean), atol=1e-5)
    np.testing.assert_allclose(result["layers"]["bn"]["weights"]["moving_variance"], bn["moving_variance"])
    # a training pass normalizes with the batch's own statistics: each channel's output mean is beta
    for name in ("gamma", "beta"):
        np.testing.assert_allclose(bn[name], result["layers"]["bn"]["weights"][name])
    np.testing.assert_allclose(bn["outputs"]["output"]["channels"]["mean"], bn["beta"], atol=1e-5)


def test_an_unknown_node_is_refused_by_name():
    result = nncards.run({"graph": graph(outputs=False), "steps": [
        {"kind": "inspect", "inputs": {"x": X.tolist()}, "nodes": ["bn", "nope"]}]})
    assert result["status"] == "failed"
    assert [(p["code"], p["node"], p["port"]) for p in result["error"]["errors"]] == [("param_invalid", "nope", "nodes")]


class Recorder:
    def __init__(self):
        self.events = []

    def emit(self, event):
        self.events.append(event)

    def cancelled(self):
        return False


def test_inspect_every_k_epochs_and_tensorboard_logs(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recorder = Recorder()
    targets = np.zeros((16, 4, 4, 4), dtype="float32")
    run = {"graph": graph(outputs=False), "steps": [{
        "kind": "fit", "inputs": {"x": X.tolist()}, "targets": {"y": targets.tolist()}, "epochs": 5,
        "batch_size": 8, "inspect_every": 2, "tensorboard": True}]}
    result = execute(run, RunOptions(observer=recorder, data_dir=tmp_path)).as_json()
    assert result["status"] == "succeeded", result["error"]
    fit = result["steps"][0]
    inspections = [e.inspection for e in recorder.events if isinstance(e, InspectEvent)]
    assert [i.epoch for i in inspections] == [2, 4] == [i["epoch"] for i in fit["inspections"]]
    assert not any(i.training for i in inspections)
    assert fit["inspections"][1]["nodes"]["bn"]["outputs"]["output"]["shape"] == [8, 4, 4, 4]
    folder = tmp_path / "runs" / result["run_id"] / "tensorboard" / "step-0"
    assert fit["tensorboard"] == str(folder)
    events = EventAccumulator(str(folder / "train"), size_guidance={"tensors": 0}).Reload()
    tags = events.Tags()["tensors"]
    assert "epoch_loss" in tags and any("moving_mean" in tag for tag in tags)
    assert len(events.Tensors("epoch_loss")) == 5


def test_nncards_tensorboard_serves_a_runs_logs_and_says_when_there_are_none(tmp_path):
    import subprocess
    import sys
    import time

    import httpx
    from conftest import free_port

    missing = subprocess.run([sys.executable, "-m", "nncards.cli", "tensorboard", "nope", "--data-dir", str(tmp_path)],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "run nope has no TensorBoard logs" in missing.stderr
    (tmp_path / "runs" / "r1" / "tensorboard").mkdir(parents=True)
    port = free_port()
    board = subprocess.Popen([sys.executable, "-m", "nncards.cli", "tensorboard", "r1", "--data-dir", str(tmp_path),
                              "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/data/environment", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("TensorBoard did not answer")
        assert str(tmp_path / "runs" / "r1" / "tensorboard") in httpx.get(
            f"http://127.0.0.1:{port}/data/environment").json()["data_location"]
    finally:
        board.terminate()
        board.wait(10)


def test_nonfinite_values_are_counted_apart_and_left_out_of_the_other_statistics():
    values = RNG.normal(1.0, 2.0, (8, 3)).astype("float32")
    values[0, 0], values[3, 0], values[5, 1] = np.nan, np.inf, -np.inf
    values[:, 2] = np.nan  # a channel with no finite value at all
    graph = {"nodes": [{"id": "x", "card": "input", "params": {"shape": [3]}},
                       {"id": "r", "card": "layer_ReLU", "params": {}}, {"id": "y", "card": "output"}],
             "edges": [{"source": "x", "source_port": "output", "target": "r", "target_port": "input"},
                       {"source": "r", "source_port": "output", "target": "y", "target_port": "input"}]}
    data = {"dtype": "float32", "shape": [8, 3], "base64": base64.b64encode(values.tobytes()).decode()}
    result = nncards.run({"graph": graph, "steps": [{"kind": "inspect", "inputs": {"x": data}, "nodes": ["x"]}]})
    assert result["status"] == "succeeded", result["error"]
    found = result["steps"][0]["nodes"]["x"]["outputs"]["output"]
    assert found["channels"]["nonfinite"] == pytest.approx([2 / 8, 1 / 8, 1.0])
    finite = [values[np.isfinite(values[:, c]), c].astype("float64") for c in range(2)]
    np.testing.assert_allclose(found["channels"]["mean"][:2], [f.mean() for f in finite], atol=1e-5)
    np.testing.assert_allclose(found["channels"]["std"][:2], [f.std() for f in finite], atol=1e-5)
    np.testing.assert_allclose(found["channels"]["min"][:2], [f.min() for f in finite], atol=1e-6)
    np.testing.assert_allclose(found["channels"]["max"][:2], [f.max() for f in finite], atol=1e-6)
    assert found["channels"]["mean"][2] == 0.0 and found["channels"]["min"][2] == "Infinity"
    every_finite = values[np.isfinite(values)]
    assert sum(found["histogram"]["counts"]) == every_finite.size
    np.testing.assert_allclose([found["histogram"]["edges"][0], found["histogram"]["edges"][-1]],
                               [every_finite.min(), every_finite.max()], atol=1e-5)
