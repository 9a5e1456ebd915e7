"""One test per problem code reachable by validation and runs, asserting code, node and port."""

import pytest

import nncards
from nncards.registry import registry
from graphs import bn_graph, edge, node


def problems(graph):
    result = nncards.validate(graph)
    assert result["valid"] is False
    return result["errors"]


def only(graph, code):
    found = [p for p in problems(graph) if p["code"] == code]
    assert found, problems(graph)
    return found


def where(problem):
    return problem.get("node"), problem.get("port")


def test_valid_graph_reports_shapes():
    result = nncards.validate(bn_graph([4, 3]))
    assert result == {"valid": True, "errors": [],
                      "shapes": {"x": {"output": [None, 4, 3]}, "bn": {"output": [None, 4, 3]}}}


def test_unknown_card():
    graph = bn_graph([2])
    graph["nodes"].append(node("z", "layer_Nope"))
    (problem,) = only(graph, "unknown_card")
    assert where(problem) == ("z", None) and problem["received"] == "layer_Nope"


@pytest.mark.parametrize("bad_id", ["has space", "", "x" * 65, "ünï"])
def test_invalid_node_id(bad_id):
    graph = bn_graph([2])
    graph["nodes"].append(node(bad_id, "initializer_Ones"))
    (problem,) = only(graph, "invalid_node_id")
    assert problem["node"] == bad_id


def test_duplicate_node_id():
    graph = bn_graph([2])
    graph["nodes"].append(node("bn", "initializer_Ones"))
    (problem,) = only(graph, "duplicate_node_id")
    assert problem["node"] == "bn"


def test_duplicate_layer_name():
    graph = bn_graph([2], {"name": "x"})  # clashes with the Input named after node x
    (problem,) = only(graph, "duplicate_layer_name")
    assert where(problem) == ("bn", "name") and problem["received"] == "x"


def test_unknown_param():
    (problem,) = only(bn_graph([2], {"momentun": 0.9}), "unknown_param")
    assert where(problem) == ("bn", "momentun")
    assert "momentum" in problem["expected"]


@pytest.mark.parametrize("params, port, received", [
    ({"center": "yes"}, "center", "yes"),
    ({"axis": 1.5}, "axis", 1.5),
    ({"epsilon": float("nan")}, "epsilon", "NaN"),
    ({"momentum": float("inf")}, "momentum", "Infinity"),
    ({"gamma_initializer": "glorot_sparkly"}, "gamma_initializer", "glorot_sparkly"),
    ({"beta_regularizer": "l3"}, "beta_regularizer", "l3"),
    ({"dtype": "int8"}, "dtype", "int8"),
    ({"gamma_initializer": "identity"}, "gamma_initializer", "initializer 'identity'"),
])
def test_param_invalid(params, port, received):
    (problem,) = only(bn_graph([2], params), "param_invalid")
    assert where(problem) == ("bn", port)
    assert problem["received"] == received


@pytest.mark.parametrize("card", ["initializer_Identity", "initializer_Orthogonal"])
def test_initializer_that_cannot_serve_a_1d_weight_is_refused_on_the_socket(card):
    graph = bn_graph([2], extra_nodes=[node("init", card)],
                     extra_edges=[edge("init", "initializer", "bn", "moving_variance_initializer")])
    (problem,) = only(graph, "param_invalid")
    assert where(problem) == ("bn", "moving_variance_initializer")
    assert "rank 2" in problem["message"]


@pytest.mark.parametrize("params, port, expected", [
    ({"momentum": 1.5}, "momentum", "0 <= momentum <= 1"),
    ({"epsilon": 0}, "epsilon", "0 < epsilon"),
    ({"renorm": True, "renorm_clipping": {"rmin": 2.0, "rmax": 1.0}}, "renorm_clipping", "rmin <= rmax"),
    ({"renorm_clipping": {"dmax": -1.0}}, "renorm_clipping", None),
])
def test_param_out_of_range(params, port, expected):
    (problem,) = only(bn_graph([2], params), "param_out_of_range")
    assert where(problem) == ("bn", port)
    if expected:
        assert problem["expected"] == expected
    assert "got" in problem["message"]


def test_axis_out_of_range_names_the_rank():
    (problem,) = only(bn_graph([4, 3], {"axis": 3}), "param_out_of_range")
    assert where(problem) == ("bn", "axis")
    assert "rank 3" in problem["message"] and problem["received"] == 3


def test_param_and_edge():
    graph = bn_graph([2], {"gamma_initializer": "ones"}, extra_nodes=[node("g", "initializer_Zeros")],
                     extra_edges=[edge("g", "initializer", "bn", "gamma_initializer")])
    (problem,) = only(graph, "param_and_edge")
    assert where(problem) == ("bn", "gamma_initializer") and problem["edge"] == 2


def test_unknown_ports_on_both_ends():
    graph = bn_graph([2], extra_nodes=[node("g", "initializer_Zeros")],
                     extra_edges=[edge("g", "init", "bn", "gamma_initializer"),
                                  edge("g", "initializer", "bn", "momentum")])
    found = only(graph, "unknown_port")
    assert sorted((p["node"], p["port"], p["edge"]) for p in found) == [("bn", "momentum", 3), ("g", "init", 2)]


def test_dangling_edge():
    graph = bn_graph([2], extra_edges=[edge("ghost", "output", "bn", "mask")])
    (problem,) = only(graph, "dangling_edge")
    assert problem["node"] == "ghost" and problem["edge"] == 2


def test_type_mismatch():
    graph = bn_graph([2], extra_nodes=[node("r", "regularizer_l2")],
                     extra_edges=[edge("r", "regularizer", "bn", "gamma_initializer")])
    (problem,) = only(graph, "type_mismatch")
    assert where(problem) == ("bn", "gamma_initializer")
    assert problem["expected"] == "NeuralNetworkInitializer" and problem["received"] == "NeuralNetworkRegularizer"


def test_multiple_edges_to_port():
    graph = bn_graph([2], extra_edges=[edge("x", "output", "bn", "input")])
    (problem,) = only(graph, "multiple_edges_to_port")
    assert where(problem) == ("bn", "input") and problem["edge"] == 2


def test_missing_required_input():
    graph = {"nodes": [node("x", "input"), node("y", "output")], "edges": []}
    found = only(graph, "missing_required_input")
    assert sorted(where(p) for p in found) == [("x", "shape"), ("y", "input")]


def test_cycle():
    graph = {"nodes": [node("x", "input", shape=[2]), node("a", "layer_BatchNormalization"),
                       node("b", "layer_BatchNormalization"), node("y", "output")],
             "edges": [edge("a", "output", "b", "input"), edge("b", "output", "a", "input"),
                       edge("b", "output", "y", "input")]}
    found = only(graph, "cycle")
    assert {p["node"] for p in found} == {"a", "b"}


def test_shape_mismatch_on_mask_rank():
    graph = bn_graph([4, 3], extra_nodes=[node("m", "input", shape=[4, 3], dtype="bool")],
                     extra_edges=[edge("m", "output", "bn", "mask")])
    (problem,) = only(graph, "shape_mismatch")
    assert where(problem) == ("bn", "mask")


def test_no_inputs_and_no_outputs():
    found = problems({"nodes": [node("bn", "layer_BatchNormalization")], "edges": []})
    assert {p["code"] for p in found} == {"no_inputs", "no_outputs"}


def test_input_too_large_before_anything_is_allocated():
    (problem,) = only(bn_graph([100_000, 100_000]), "too_large")
    assert where(problem) == ("x", "shape")


def test_every_problem_in_one_pass_and_shapes_of_the_valid_part():
    graph = bn_graph([5], {"momentum": 2.0})
    graph["nodes"] += [node("x2", "input", shape=[3]), node("bn2", "layer_BatchNormalization", epsilon=-1),
                       node("y2", "output")]
    graph["edges"] += [edge("x2", "output", "bn2", "input"), edge("bn2", "output", "y2", "input")]
    result = nncards.validate(graph)
    assert sorted(where(p) for p in result["errors"]) == [("bn", "momentum"), ("bn2", "epsilon")]
    assert result["shapes"] == {"x": {"output": [None, 5]}, "x2": {"output": [None, 3]}}


def test_run_with_invalid_graph_fails_with_the_envelope():
    result = nncards.run({"graph": bn_graph([2], {"momentum": -1}), "steps": []})
    assert result["status"] == "failed"
    assert result["error"]["code"] == "graph_invalid"
    assert [where(p) for p in result["error"]["errors"]] == [("bn", "momentum")]


@pytest.mark.parametrize("inputs, port, fragment", [
    ({"x": [[1.0, 2.0, 3.0]]}, "shape", "[None, 2]"),
    ({"x": [[1.0, 2.0], [3.0]]}, None, "ragged"),
    ({"x": [["a", "b"]]}, None, "not a number"),
    ({"z": [[1.0, 2.0]]}, None, "not an Input"),
])
def test_array_invalid(inputs, port, fragment):
    result = nncards.run({"graph": bn_graph([2]), "steps": [{"kind": "predict", "inputs": inputs}]})
    assert result["status"] == "failed" and result["error"]["code"] == "array_invalid"
    (problem,) = result["error"]["errors"]
    assert problem["code"] == "array_invalid" and problem.get("port") == port
    assert fragment in problem["message"]


def test_array_of_floats_for_an_integer_input_is_refused():
    graph = bn_graph([2], input_dtype="int32")
    result = nncards.run({"graph": graph, "steps": [{"kind": "predict", "inputs": {"x": [[1.5, 2.0]]}}]})
    assert result["error"]["code"] == "array_invalid"
    assert result["error"]["errors"][0]["node"] == "x"


def test_running_out_of_memory_is_no_problem_of_a_node(monkeypatch):
    """A MemoryError building a node is the process's want, not the node's fault: it reaches the
    caller (the server's validation answers `too_large`, uncached) instead of becoming the
    node's `shape_mismatch`."""

    def out_of_memory(*args):
        raise MemoryError

    monkeypatch.setattr(registry().get("layer_BatchNormalization"), "build", out_of_memory)
    with pytest.raises(MemoryError):
        nncards.validate(bn_graph([6]))
