"""Networks around batch normalization: weight sharing, wrappers, merges, recurrent states and
the example networks (reduced)."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

import nncards
from graphs import edge, node

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))


def graph(nodes, edges):
    return {"schema_version": 1, "nodes": nodes, "edges": edges}


def shared_dense(second_shape):
    """`d` = Dense(2) on `a`; `s` applies the same layer to `b`."""
    return graph(
        [node("a", "input", shape=[4]), node("b", "input", shape=second_shape), node("d", "layer_Dense", units=2),
         node("s", "apply_layer"), node("ya", "output"), node("yb", "output")],
        [edge("a", "output", "d", "input"), edge("d", "layer", "s", "layer"), edge("b", "output", "s", "input"),
         edge("d", "output", "ya", "input"), edge("s", "output", "yb", "input")],
    )


def test_apply_layer_shares_one_set_of_weights():
    model = nncards.build_model(shared_dense([4]))
    assert len(model.weights) == 2  # one kernel and one bias for both branches
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(8, 4)), rng.normal(size=(8, 4))
    target_a, target_b = rng.normal(size=(8, 2)), rng.normal(size=(8, 2))
    result = nncards.run({"graph": shared_dense([4]), "seed": 0, "steps": [
        {"kind": "fit", "inputs": {"a": a.tolist(), "b": b.tolist()},
         "targets": {"ya": target_a.tolist(), "yb": target_b.tolist()}, "epochs": 2, "batch_size": 8},
        {"kind": "predict", "inputs": {"a": a.tolist(), "b": b.tolist()}},
    ]})
    assert result["status"] == "succeeded", result["error"]
    assert set(result["layers"]) == {"d"}  # reported once, under the node that made it
    kernel, bias = (np.asarray(result["layers"]["d"]["weights"][w]) for w in ("kernel", "bias"))
    outputs = result["steps"][1]["outputs"]
    np.testing.assert_allclose(outputs["ya"], a @ kernel + bias, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs["yb"], b @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_apply_layer_explains_a_shape_the_layer_cannot_take():
    result = nncards.validate(shared_dense([3]))
    assert not result["valid"]
    [problem] = result["errors"]
    assert (problem["code"], problem["node"], problem["port"]) == ("shape_mismatch", "s", "input")
    assert problem["expected"] == [None, 4] and problem["received"] == [None, 3]
    assert "built for inputs of shape [None, 4]" in problem["message"]
    assert result["shapes"]["d"]["output"] == [None, 2]  # the rest of the graph still gets shapes


def bidirectional(layer_card="layer_LSTM", **bi_params):
    return graph(
        [node("x", "input", shape=[5, 3]), node("enc", layer_card, units=2), node("bi", "layer_Bidirectional", **bi_params),
         node("y", "output")],
        [edge("enc", "layer", "bi", "layer"), edge("x", "output", "bi", "input"), edge("bi", "output", "y", "input")],
    )


def test_bidirectional_reports_weights_by_path_and_loads_them():
    kernel = np.full((3, 8), 0.1)
    result = nncards.run({"graph": bidirectional(), "seed": 0,
                          "weights": {"bi": {"forward_enc/lstm_cell/kernel": kernel.tolist()}},
                          "steps": [{"kind": "predict", "inputs": {"x": np.ones((2, 5, 3)).tolist()}}]})
    assert result["status"] == "succeeded", result["error"]
    weights = result["layers"]["bi"]["weights"]
    assert set(weights) == {f"{direction}_enc/lstm_cell/{name}" for direction in ("forward", "backward")
                            for name in ("kernel", "recurrent_kernel", "bias")}
    np.testing.assert_allclose(weights["forward_enc/lstm_cell/kernel"], kernel)
    assert result["model"]["outputs"]["y"] == [None, 4]


def test_bidirectional_refuses_a_layer_that_is_not_recurrent():
    errors = nncards.validate(bidirectional("layer_Dense"))["errors"]
    assert [(e["code"], e["node"], e["port"], e["received"]) for e in errors] == [("param_invalid", "bi", "layer", "Dense")]


def test_bidirectional_without_merge_gives_both_directions():
    shapes = nncards.validate(bidirectional(merge_mode=None))["shapes"]["bi"]
    assert shapes == {"output": [None, 2], "backward_output": [None, 2]}


def test_lstm_states_get_their_own_ports():
    g = graph([node("x", "input", shape=[5, 3]), node("l", "layer_LSTM", units=4, return_sequences=True, return_state=True),
               node("y", "output")],
              [edge("x", "output", "l", "input"), edge("l", "state_c", "y", "input")])
    result = nncards.validate(g)
    assert result["valid"], result["errors"]
    assert result["shapes"]["l"] == {"output": [None, 5, 4], "state_h": [None, 4], "state_c": [None, 4]}


@pytest.mark.parametrize("card, count, code", [
    ("mergeLayer_Add", 1, "missing_required_input"),
    ("mergeLayer_Subtract", 3, "shape_mismatch"),
    ("mergeLayer_Concatenate", 3, None),
])
def test_merge_cards_count_their_inputs(card, count, code):
    inputs = [node(f"x{i}", "input", shape=[4]) for i in range(count)]
    g = graph([*inputs, node("m", card), node("y", "output")],
              [*(edge(f"x{i}", "output", "m", "inputs") for i in range(count)), edge("m", "output", "y", "input")])
    errors = nncards.validate(g)["errors"]
    assert [(e["code"], e["node"], e["port"]) for e in errors] == ([(code, "m", "inputs")] if code else [])


def test_subtract_follows_edge_order():
    g = graph([node("p", "input", shape=[2]), node("q", "input", shape=[2]), node("m", "mergeLayer_Subtract"), node("y", "output")],
              [edge("q", "output", "m", "inputs"), edge("p", "output", "m", "inputs"), edge("m", "output", "y", "input")])
    result = nncards.run({"graph": g, "steps": [{"kind": "call", "inputs": {"p": [[1.0, 2.0]], "q": [[10.0, 20.0]]}}]})
    assert result["steps"][0]["outputs"]["y"] == [[9.0, 18.0]]


def test_shapes_cnn_reduced_learns():
    shapes_cnn = importlib.import_module("shapes_cnn")
    result = nncards.run(shapes_cnn.run_request(n_train=400, n_test=100, epochs=3))
    assert result["status"] == "succeeded", result["error"]
    assert result["steps"][1]["metrics"]["accuracy"] >= 0.6  # three classes: chance is 1/3
    assert {"bn1", "bn2", "bn3"} <= set(result["layers"])
    assert result["layers"]["bn1"]["weights"]["moving_variance"] != [1.0] * 8  # statistics were gathered


def test_masked_lstm_reduced_learns_and_ignores_padding():
    masked_lstm = importlib.import_module("masked_lstm")
    result = nncards.run(masked_lstm.run_request(n_train=400, n_test=100, epochs=3))
    assert result["status"] == "succeeded", result["error"]
    assert result["steps"][1]["metrics"]["binary_accuracy"] >= 0.7
    short, long = (np.asarray(step["outputs"]["high"]) for step in result["steps"][2:])
    np.testing.assert_allclose(short, long, atol=1e-5)
