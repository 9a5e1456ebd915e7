"""The Keras 2 batch normalization options and the normalize-batch op, through `nncards.run`."""

import numpy as np
import pytest

import nncards
from graphs import bn_graph, edge, node

RNG = np.random.default_rng(5)
X4 = RNG.normal(1.0, 2.0, size=(8, 3, 3, 2)).astype("float32")
X2 = RNG.normal(1.0, 2.0, size=(8, 3)).astype("float32")


def fit_and_call(graph, x, batch_size=8, seed=0):
    return nncards.run({"graph": graph, "seed": seed, "steps": [
        {"kind": "fit", "inputs": {"x": x.tolist()}, "targets": {"y": x.tolist()}, "batch_size": batch_size},
        {"kind": "call", "inputs": {"x": x.tolist()}, "training": True},
        {"kind": "call", "inputs": {"x": x[:3].tolist()}},
    ]})


@pytest.mark.parametrize("params, x, kernel", [
    ({}, X4, "custom_op"),
    ({"fused": True}, X4, "fused"),
    ({"fused": True, "axis": 1}, X4.transpose(0, 3, 1, 2), "fused"),
    ({"axis": 1}, X4.transpose(0, 3, 1, 2), "custom_op"),
    ({"axis": 1, "dtype": "bfloat16"}, X4.transpose(0, 3, 1, 2), "xla"),
    ({"fused": False}, X4, "composite"),
    ({"virtual_batch_size": 4}, X4, "composite"),
    ({"adjustment": {"scale": [0.9, 1.1], "bias": [-0.1, 0.1]}, "renorm": True}, X4, "composite"),
    ({"dtype": "bfloat16"}, X4, "fused"),
    ({}, X2, "custom_op"),
    ({"renorm": True}, X2, "composite"),
], ids=["default-4d", "fused-4d", "fused-nchw", "nchw-op", "nchw-bfloat16-xla", "not-fused", "ghost", "adjustment-renorm", "bfloat16", "default-2d",
        "renorm-2d"])
def test_options_run_and_report_the_kernel(params, x, kernel):
    result = fit_and_call(bn_graph(x.shape[1:], params), x)
    assert result["status"] == "succeeded", result["error"]
    report = result["layers"]["bn"]
    assert (report["kernel"], report["fused_kernel"]) == (kernel, kernel.startswith("fused"))
    assert {k: len(v) for k, v in report["weights"].items()} == {
        "gamma": x.shape[params.get("axis", -1)], "beta": x.shape[params.get("axis", -1)],
        "moving_mean": x.shape[params.get("axis", -1)], "moving_variance": x.shape[params.get("axis", -1)],
        **({name: x.shape[-1] for name in ("moving_stddev", "renorm_mean", "renorm_stddev")} if params.get("renorm") else {})}
    assert np.asarray(result["steps"][2]["outputs"]["y"]).shape == (3, *x.shape[1:])


def test_adjustment_draws_follow_the_run_seed():
    graph = bn_graph([3], {"adjustment": {"scale": [0.5, 1.5]}})
    outputs = [fit_and_call(graph, X2, seed=seed)["steps"][1]["outputs"]["y"] for seed in (1, 1, 2)]
    assert outputs[0] == outputs[1]
    assert not np.allclose(outputs[0], outputs[2])


def test_ghost_fit_with_indivisible_batches_is_refused_before_training():
    result = fit_and_call(bn_graph([3], {"virtual_batch_size": 4}), X2, batch_size=6)
    assert result["status"] == "failed"
    assert result["error"]["code"] == "run_failed"
    [problem] = result["error"]["errors"]
    assert (problem["code"], problem["node"], problem["port"], problem["received"]) == \
        ("param_invalid", "bn", "virtual_batch_size", 4)
    assert result["steps"] == []
    assert result["layers"]["bn"]["weights"]["moving_mean"] == [0.0, 0.0, 0.0]  # nothing trained


@pytest.mark.parametrize("params, shape, port", [
    ({"fused": True, "renorm": True}, [3, 3, 2], "fused"),
    ({"fused": True, "synchronized": True}, [3, 3, 2], "fused"),
    ({"fused": True}, [3], "fused"),
    ({"fused": True, "axis": 2}, [3, 3, 2], "fused"),
    ({"fused": True, "dtype": "float64"}, [3, 3, 2], "fused"),
    ({"fused": True, "virtual_batch_size": 2}, [3, 3, 2], "fused"),
    ({"virtual_batch_size": 2, "adjustment": {"bias": [0, 1]}}, [3], "virtual_batch_size"),
], ids=["renorm", "synchronized", "rank2", "axis2", "float64", "ghost", "ghost-adjustment"])
def test_incompatible_options_are_param_invalid_on_the_option(params, shape, port):
    result = nncards.validate(bn_graph(shape, params))
    assert not result["valid"]
    assert [(e["code"], e["node"], e["port"]) for e in result["errors"]] == [("param_invalid", "bn", port)]


@pytest.mark.parametrize("params, shape, masked", [
    ({"fused": True, "renorm": True}, [3, 3, 2], False),
    ({"fused": True, "dtype": "float64"}, [3, 3, 2], False),
    ({"fused": True, "axis": 2}, [3, 3, 2], False),
    ({"fused": True}, [3, 3, 2], True),
    ({"virtual_batch_size": 2}, [3, 2], True),
    ({"virtual_batch_size": 2, "axis": 0}, [3], False),
    ({"virtual_batch_size": 2, "adjustment": {"bias": [0, 1]}}, [3], False),
    ({"fused": True}, [3, 3, 2], False),
    ({"virtual_batch_size": 2, "renorm": True}, [3], False),
], ids=["renorm", "float64", "axis2", "fused-mask", "ghost-mask", "ghost-axis0", "ghost-adjustment", "fine",
        "ghost-renorm"])
def test_card_and_layer_refuse_the_same_combinations(params, shape, masked):
    """One set of rules: the card's validation problems name the options the layer refuses."""
    from nncards.layers.batch_normalization import BatchNormalization

    extra = dict(extra_nodes=[node("m", "input", shape=shape[:-1], dtype="bool")],
                 extra_edges=[edge("m", "output", "bn", "mask")]) if masked else {}
    errors = nncards.validate(bn_graph(shape, params, **extra))["errors"]
    ports = [e["port"] for e in errors if e["code"] == "param_invalid"]
    x = np.ones((4, *shape), "float32")
    try:
        layer = BatchNormalization(**params)
        layer(x, training=True, mask=np.ones(x.shape[:-1], bool) if masked else None)
        refused = None
    except ValueError as error:
        refused = str(error)
    if ports:
        assert refused is not None and all(f"expected {port}:" in refused for port in ports), (ports, refused)
    else:
        assert refused is None, refused


def test_fused_true_with_a_mask_socket_is_refused():
    graph = bn_graph([3, 3, 2], {"fused": True}, extra_nodes=[node("m", "input", shape=[3, 3], dtype="bool")],
                     extra_edges=[edge("m", "output", "bn", "mask")])
    errors = nncards.validate(graph)["errors"]
    assert [(e["code"], e["port"]) for e in errors] == [("param_invalid", "fused")]


@pytest.mark.parametrize("params, port, code", [
    ({"virtual_batch_size": 0}, "virtual_batch_size", "param_out_of_range"),
    ({"adjustment": {"scale": [2.0, 1.0]}}, "adjustment", "param_out_of_range"),
    ({"adjustment": {"shift": [0, 1]}}, "adjustment", "param_invalid"),
    ({"adjustment": {"scale": [1.0]}}, "adjustment", "param_invalid"),
    ({"fused": "yes"}, "fused", "param_invalid"),
])
def test_option_values_are_checked(params, port, code):
    errors = nncards.validate(bn_graph([3], params))["errors"]
    assert [(e["code"], e["port"]) for e in errors] == [(code, port)]


def test_normalize_batch_op_card_gives_statistics_without_batch_axis():
    graph = {"schema_version": 1, "nodes": [
        node("x", "input", shape=[3, 3, 2]),
        node("n", "op_normalize_batch_in_training", reduction_axes=[0, 1, 2], epsilon=1e-3),
        node("y", "output"), node("m", "output"), node("v", "output"),
    ], "edges": [edge("x", "output", "n", "input"), edge("n", "output", "y", "input"),
                 edge("n", "mean", "m", "input"), edge("n", "variance", "v", "input")]}
    validation = nncards.validate(graph)
    assert validation["shapes"]["n"] == {"output": [None, 3, 3, 2], "mean": [2], "variance": [2]}
    result = nncards.run({"graph": graph, "steps": [{"kind": "call", "inputs": {"x": X4.tolist()}}]})
    assert result["status"] == "succeeded", result["error"]
    outputs = result["steps"][0]["outputs"]
    flat = X4.reshape(-1, 2)
    np.testing.assert_allclose(outputs["m"], flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(outputs["v"], flat.var(0, ddof=1), rtol=1e-5)  # fused path: unbiased
    np.testing.assert_allclose(outputs["y"], (X4 - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-3), rtol=1e-4, atol=1e-5)
    graph["nodes"][1]["params"]["reduction_axes"] = [0, 4]
    errors = nncards.validate(graph)["errors"]
    assert [(e["code"], e["node"], e["port"]) for e in errors] == [("param_out_of_range", "n", "reduction_axes")]


def test_jit_compile_steps_compile_with_xla_and_give_the_same_numbers():
    from nncards.contract.run import Run
    from nncards.execute.options import RunOptions
    from nncards.execute.runner import STEP_HANDLERS, RunModel

    x = X4.transpose(0, 3, 1, 2)
    results = []
    for jit_compile in (False, True):
        steps = [{"kind": "fit", "inputs": {"x": x.tolist()}, "targets": {"y": x.tolist()}, "epochs": 1,
                  "batch_size": 4, "shuffle": False, "jit_compile": jit_compile},
                 {"kind": "evaluate", "inputs": {"x": x.tolist()}, "targets": {"y": x.tolist()},
                  "jit_compile": jit_compile},
                 {"kind": "predict", "inputs": {"x": x.tolist()}, "jit_compile": jit_compile}]
        request = Run.model_validate({"graph": bn_graph(x.shape[1:], {"axis": 1}), "seed": 3, "steps": steps})
        session = RunModel(request, RunOptions())
        outcome = [STEP_HANDLERS[type(step)](session, index, step).model_dump() for index, step in enumerate(request.steps)]
        assert session.model.jit_compile is jit_compile
        results.append((outcome, session.report_layers()["bn"].weights))
    (plain, plain_weights), (compiled, compiled_weights) = results
    np.testing.assert_allclose(compiled[0]["history"]["loss"], plain[0]["history"]["loss"], rtol=1e-5)
    np.testing.assert_allclose(compiled[1]["metrics"]["loss"], plain[1]["metrics"]["loss"], rtol=1e-5)
    np.testing.assert_allclose(compiled[2]["outputs"]["y"], plain[2]["outputs"]["y"], atol=1e-5)
    for name, value in plain_weights.items():
        np.testing.assert_allclose(compiled_weights[name], value, atol=1e-5)
