"""Runs: regularizers and constraints wired as cards, state across steps, seeds, the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nncards
from graphs import bn_graph, edge, node

ROOT = Path(__file__).parent.parent
X = np.random.default_rng(3).normal(size=(8, 3)).astype("float32").tolist()
Y = np.random.default_rng(4).normal(size=(8, 3)).astype("float32").tolist()
GAMMA = [2.0, -1.0, 0.5]


def evaluate_loss(graph):
    result = nncards.run({"graph": graph, "weights": {"bn": {"gamma": GAMMA}},
                          "steps": [{"kind": "evaluate", "inputs": {"x": X}, "targets": {"y": Y}}]})
    assert result["status"] == "succeeded", result["error"]
    return result["steps"][0]["metrics"]["loss"], result["layers"]["bn"]["weights"]["gamma"]


def test_l2_regularizer_card_adds_exactly_lambda_times_squared_norm():
    plain, _ = evaluate_loss(bn_graph([3]))
    regularized, gamma = evaluate_loss(bn_graph([3], extra_nodes=[node("r", "regularizer_l2", l2=0.05)],
                                                extra_edges=[edge("r", "regularizer", "bn", "gamma_regularizer")]))
    assert regularized - plain == pytest.approx(0.05 * float(np.sum(np.square(gamma))), abs=1e-5)
    assert regularized > plain


def test_max_norm_constraint_card_holds_after_fit():
    graph = bn_graph([3], extra_nodes=[node("c", "constraint_MaxNorm", max_value=1.0)],
                     extra_edges=[edge("c", "constraint", "bn", "gamma_constraint")])
    result = nncards.run({"graph": graph, "weights": {"bn": {"gamma": [3.0, 4.0, 0.0]}},
                          "steps": [{"kind": "fit", "inputs": {"x": X}, "targets": {"y": Y}, "batch_size": 4,
                                     "optimizer": {"name": "sgd", "learning_rate": 0.1}}]})
    assert result["status"] == "succeeded", result["error"]
    assert np.linalg.norm(result["layers"]["bn"]["weights"]["gamma"]) <= 1.0 + 1e-6


def test_state_carries_between_steps_and_seed_makes_runs_reproducible():
    graph = bn_graph([3], {"gamma_initializer": "random_normal"})
    request = {"graph": graph, "seed": 11, "steps": [
        {"kind": "call", "inputs": {"x": X}, "training": True},
        {"kind": "fit", "inputs": {"x": X}, "targets": {"y": Y}, "epochs": 2, "batch_size": 4, "metrics": ["mae"]},
        {"kind": "evaluate", "inputs": {"x": X}, "targets": {"y": Y}},
        {"kind": "predict", "inputs": {"x": X[:2]}, "batch_size": 1},
    ]}
    first, second = nncards.run(request), nncards.run(request)
    assert first["status"] == "succeeded", first["error"]
    assert first["steps"] == second["steps"] and first["layers"] == second["layers"]
    assert [s["kind"] for s in first["steps"]] == ["call", "fit", "evaluate", "predict"]
    assert set(first["steps"][1]["history"]) == {"loss", "mae"} and len(first["steps"][1]["history"]["loss"]) == 2
    assert set(first["steps"][2]["metrics"]) == {"loss", "mae"}  # evaluate reuses the last compile
    # the training call and the fit both moved the moving mean: 1 call + 2 epochs × 2 batches
    assert np.abs(first["layers"]["bn"]["weights"]["moving_mean"]).min() > 0
    other_seed = nncards.run({**request, "seed": 12})
    assert other_seed["layers"]["bn"]["weights"]["gamma"] != first["layers"]["bn"]["weights"]["gamma"]
    assert first["model"] == {"inputs": {"x": [None, 3]}, "outputs": {"y": [None, 3]}, "params": 12}


def test_a_fit_makes_its_optimizer_variables_before_it_trains(monkeypatch):
    """Keras would make them in the first traced training step, which TensorFlow then traces a
    second time; the fit ends exactly as it does that way."""
    from tensorflow.python.eager.polymorphic_function import tracing_compilation

    from nncards.execute import runner

    request = {"graph": bn_graph([3], {"gamma_initializer": "random_normal"}), "seed": 5, "steps": [
        {"kind": "fit", "inputs": {"x": X}, "targets": {"y": Y}, "epochs": 2, "batch_size": 2},
        {"kind": "fit", "inputs": {"x": X}, "targets": {"y": Y}, "epochs": 1, "batch_size": 2,
         "optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}}]}
    nncards.run(request)  # whatever a first fit in this process traces once only
    traces = []
    trace = tracing_compilation.trace_function
    monkeypatch.setattr(tracing_compilation, "trace_function", lambda *a, **k: traces.append(1) or trace(*a, **k))
    ours = nncards.run(request)
    our_traces, traces[:] = len(traces), []
    monkeypatch.setattr(runner, "build_optimizer", lambda model: None)  # Keras' own way
    keras_way = nncards.run(request)
    assert ours["status"] == "succeeded", ours["error"]
    assert ours["steps"] == keras_way["steps"] and ours["layers"] == keras_way["layers"]
    assert our_traces < len(traces)


IMAGES = np.random.default_rng(5).normal(size=(4, 3, 2, 2)).astype("float32").tolist()


@pytest.mark.parametrize("graph, data", [
    (bn_graph([3]), X),  # Keras' optimizer sums the gradients of its one replica through a custom gradient
    (bn_graph([3, 2, 2], {"axis": 1, "dtype": "bfloat16"}), IMAGES),  # and batch normalization's XLA route has its own
], ids=["replica sum", "xla route"])
def test_a_fit_leaves_nothing_of_its_training_step_behind(graph, data):
    """`tf.custom_gradient` registers its gradient with TensorFlow for good at every trace, and with
    it the traced step, unless the run drops what was registered once it is over."""
    import gc

    from tensorflow.python.framework.func_graph import FuncGraph

    def graphs() -> int:
        gc.collect()
        return sum(isinstance(o, FuncGraph) for o in gc.get_objects())

    request = {"graph": graph, "seed": 3, "steps": [
        {"kind": "fit", "inputs": {"x": data}, "targets": {"y": data}, "epochs": 2, "batch_size": 2}]}
    first = nncards.run(request)
    assert first["status"] == "succeeded", first["error"]
    before = graphs()
    for _ in range(3):
        again = nncards.run(request)
        assert again["steps"] == first["steps"] and again["layers"] == first["layers"]
    assert graphs() == before


def test_failed_step_keeps_finished_steps_and_layer_state():
    result = nncards.run({"graph": bn_graph([3]), "steps": [
        {"kind": "call", "inputs": {"x": X}, "training": True},
        {"kind": "predict", "inputs": {"x": [[1.0]]}},
    ]})
    assert result["status"] == "failed" and result["error"]["code"] == "array_invalid"
    assert len(result["steps"]) == 1
    assert result["layers"]["bn"]["weights"]["moving_mean"] != [0.0, 0.0, 0.0]


def test_layer_card_without_input_produces_only_the_layer():
    graph = bn_graph([3], extra_nodes=[node("spare", "layer_BatchNormalization")])
    result = nncards.validate(graph)
    assert result["valid"] and "spare" not in result["shapes"]


def test_build_model_keys_inputs_and_outputs_by_node_id():
    model = nncards.build_model(bn_graph([3]))
    assert [t.shape for t in model.inputs] == [(None, 3)]
    assert list(model.output) == ["y"]
    assert model.get_layer("bn").__class__.__name__ == "BatchNormalization"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "nncards.cli", *args], cwd=ROOT, capture_output=True, text=True)


def test_cli_runs_the_example_and_validates():
    done = cli("run", "examples/batchnorm.json")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded"
    assert [s["kind"] for s in result["steps"]] == ["call", "fit", "predict"]
    assert set(result["layers"]["bn"]["weights"]) == {"gamma", "beta", "moving_mean", "moving_variance"}


def test_cli_validate_and_cards(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(bn_graph([2], {"momentum": 7})))
    done = cli("validate", str(bad))
    assert done.returncode == 1
    assert json.loads(done.stdout)["errors"][0]["port"] == "momentum"
    listing = cli("cards")
    assert listing.returncode == 0
    assert "Batch normalization layer [layer_BatchNormalization]" in listing.stdout
    assert "Normalization/" in listing.stdout


def test_cli_runs_a_bare_graph_on_one_batch_of_zeros(tmp_path):
    graph = tmp_path / "graph.json"
    graph.write_text(json.dumps(bn_graph([None, 2])))
    done = cli("run", str(graph))
    assert done.returncode == 0, done.stderr[-2000:]
    (step,) = json.loads(done.stdout)["steps"]
    assert step["kind"] == "predict" and np.array(step["outputs"]["y"]).shape == (1, 1, 2)


def test_several_outputs_are_keyed_by_output_node_id():
    graph = {"nodes": [node("x", "input", shape=[3]), node("a", "layer_BatchNormalization"),
                       node("b", "layer_BatchNormalization", momentum=0.5), node("y1", "output"), node("y2", "output")],
             "edges": [edge("x", "output", "a", "input"), edge("x", "output", "b", "input"),
                       edge("a", "output", "y1", "input"), edge("b", "output", "y2", "input")]}
    result = nncards.run({"graph": graph, "steps": [
        {"kind": "fit", "inputs": {"x": X}, "targets": {"y1": Y, "y2": X}, "metrics": ["mae"],
         "loss": {"y1": "mse", "y2": "mae"}},
        {"kind": "predict", "inputs": {"x": X[:2]}},
    ]})
    assert result["status"] == "succeeded", result["error"]
    assert set(result["steps"][0]["history"]) == {"loss", "y1_loss", "y1_mae", "y2_loss", "y2_mae"}
    assert set(result["steps"][1]["outputs"]) == {"y1", "y2"}
    assert result["model"]["outputs"] == {"y1": [None, 3], "y2": [None, 3]}


def test_every_step_kind_has_a_handler_and_a_result():
    from typing import get_args

    from nncards.contract.run import Step, StepKind, StepResult
    from nncards.execute.runner import STEP_HANDLERS

    steps, results = get_args(get_args(Step)[0]), get_args(get_args(StepResult)[0])
    assert set(STEP_HANDLERS) == set(steps)
    kind_of = lambda model: get_args(model.model_fields["kind"].annotation)[0]  # noqa: E731
    assert sorted(map(kind_of, steps)) == sorted(map(kind_of, results)) == sorted(StepKind)
