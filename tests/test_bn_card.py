"""The batch normalization card against a stock keras.layers.BatchNormalization.

Each configuration runs Input → BN → Output with a training `call` then an inference `call`
through `nncards.run`, and the same data through the stock layer built with the same arguments
and weights: outputs, moving mean and moving variance must agree within 1e-5.
"""

import numpy as np
import pytest

import nncards
from graphs import bn_graph, edge, node

keras = pytest.importorskip("keras")

RNG = np.random.default_rng(7)
X2 = RNG.normal(2.0, 3.0, size=(6, 3)).astype("float32")
X4 = RNG.normal(-1.0, 2.0, size=(4, 3, 2, 2)).astype("float32")


def run_twice(graph, inputs, weights=None):
    steps = [{"kind": "call", "inputs": inputs, "training": True},
             {"kind": "call", "inputs": inputs, "training": False}]
    result = nncards.run({"graph": graph, "steps": steps, "weights": weights or {}})
    assert result["status"] == "succeeded", result["error"]
    outputs = [np.array(s["outputs"]["y"], dtype="float64") for s in result["steps"]]
    return outputs, result["layers"]["bn"]


def stock_twice(layer, x, **call):
    training = layer(x, training=True, **call)
    inference = layer(x, training=False, **call)
    return [np.asarray(training, dtype="float64"), np.asarray(inference, dtype="float64")]


def assert_same(card_run, stock_outputs, layer, atol=1e-5):
    (outputs, report) = card_run
    for ours, theirs in zip(outputs, stock_outputs):
        np.testing.assert_allclose(ours, theirs, atol=atol)
    np.testing.assert_allclose(report["weights"]["moving_mean"], layer.moving_mean.numpy(), atol=atol)
    np.testing.assert_allclose(report["weights"]["moving_variance"], layer.moving_variance.numpy(), atol=atol)


@pytest.mark.parametrize("params, x", [
    ({}, X2),
    ({"momentum": 0.9, "epsilon": 1e-5, "axis": 1}, X4),
    ({"center": False, "scale": False}, X2),
    ({"renorm": True, "renorm_clipping": {"rmax": 1.5, "rmin": 0.8, "dmax": 0.2}, "renorm_momentum": 0.9,
      "momentum": 0.5}, X2),
], ids=["defaults", "axis1-momentum-epsilon", "no-center-no-scale", "renorm-clipping"])
def test_matches_stock_keras(params, x):
    graph = bn_graph(x.shape[1:], params)
    stock = keras.layers.BatchNormalization(**params)
    assert_same(run_twice(graph, {"x": x.tolist()}), stock_twice(stock, x), stock)
    # the moving statistics really moved in training
    assert not np.allclose(stock.moving_mean.numpy(), 0)


def test_not_trainable_is_inference_mode_without_updates():
    weights = {"bn": {"moving_mean": [1.0, -1.0, 0.5], "moving_variance": [4.0, 0.25, 1.0],
                      "gamma": [2.0, 1.0, 0.5], "beta": [0.0, 1.0, -1.0]}}
    outputs, report = run_twice(bn_graph([3], {"trainable": False}), {"x": X2.tolist()}, weights)
    stock = keras.layers.BatchNormalization(trainable=False)
    stock.build((None, 3))
    for variable in stock.weights:
        variable.assign(np.array(weights["bn"][variable.name], dtype="float32"))
    expected = stock_twice(stock, X2)
    np.testing.assert_allclose(outputs[0], expected[0], atol=1e-5)
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-6)  # training call = inference
    np.testing.assert_allclose(report["weights"]["moving_mean"], weights["bn"]["moving_mean"], atol=0)
    np.testing.assert_allclose(report["weights"]["moving_variance"], weights["bn"]["moving_variance"], atol=0)


def test_constant_gamma_initializer_card():
    graph = bn_graph([3], {"momentum": 0.9}, extra_nodes=[node("g", "initializer_Constant", value=2.0)],
                     extra_edges=[edge("g", "initializer", "bn", "gamma_initializer")])
    card = run_twice(graph, {"x": X2.tolist()})
    assert card[1]["weights"]["gamma"] == [2.0, 2.0, 2.0]
    stock = keras.layers.BatchNormalization(momentum=0.9, gamma_initializer=keras.initializers.Constant(2.0))
    assert_same(card, stock_twice(stock, X2), stock)


def test_mixed_float16_outputs_float16_keeps_float32_variables():
    from nncards.execute.entry import execute
    from nncards.execute.options import RunOptions

    result = execute({
        "graph": bn_graph([3], {"dtype": "mixed_float16"}),
        "steps": [{"kind": "call", "inputs": {"x": X2.tolist()}, "training": True},
                  {"kind": "call", "inputs": {"x": X2.tolist()}, "training": False}],
    }, RunOptions(as_base64=True)).as_json()
    assert result["status"] == "succeeded", result["error"]
    assert [s["outputs"]["y"]["dtype"] for s in result["steps"]] == ["float16", "float16"]
    assert {w["dtype"] for w in result["layers"]["bn"]["weights"].values()} == {"float32"}
    stock = keras.layers.BatchNormalization(dtype="mixed_float16")
    expected = stock_twice(stock, X2)
    from nncards.contract import arrays

    for step, theirs in zip(result["steps"], expected):
        np.testing.assert_allclose(arrays.decode(step["outputs"]["y"]).astype("float64"), theirs, atol=1e-5)
    np.testing.assert_allclose(arrays.decode(result["layers"]["bn"]["weights"]["moving_mean"]),
                               stock.moving_mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(arrays.decode(result["layers"]["bn"]["weights"]["moving_variance"]),
                               stock.moving_variance.numpy(), atol=1e-5)


def test_mask_socket_excludes_masked_positions_from_statistics():
    x = RNG.normal(size=(2, 4, 3)).astype("float32")
    x[0, 3] = 1e4  # a masked outlier: it must not move the statistics
    mask = np.array([[True, True, True, False], [True, False, True, True]])
    graph = bn_graph([4, 3], {"momentum": 0.5},
                     extra_nodes=[node("m", "input", shape=[4], dtype="bool")],
                     extra_edges=[edge("m", "output", "bn", "mask")])
    card = run_twice(graph, {"x": x.tolist(), "m": mask.tolist()})
    stock = keras.layers.BatchNormalization(momentum=0.5)
    assert_same(card, stock_twice(stock, x, mask=mask), stock)
    kept = x[mask]
    np.testing.assert_allclose(card[1]["weights"]["moving_mean"], 0.5 * kept.mean(axis=0), atol=1e-5)
