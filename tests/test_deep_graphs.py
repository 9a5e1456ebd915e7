"""A chain as long as the graph limit allows validates and runs (Keras builds functional models
recursively, once per layer along the chain)."""

import sys

import numpy as np

import nncards
from graphs import edge, node
from nncards.contract.limits import DEFAULT_LIMITS


def chain(length):
    """Input → (length - 2) linear activations → Output."""
    ids = ["x", *(f"a{i}" for i in range(length - 2)), "y"]
    nodes = [node("x", "input", shape=[2]), *(node(i, "layer_Activation", activation="linear") for i in ids[1:-1]),
             node("y", "output")]
    return {"schema_version": 1, "nodes": nodes, "edges": [edge(a, "output", b, "input") for a, b in zip(ids, ids[1:])]}


def test_a_chain_of_the_largest_allowed_size_validates_and_runs():
    graph = chain(DEFAULT_LIMITS.max_nodes)
    limit = sys.getrecursionlimit()
    assert nncards.validate(graph)["valid"]
    x = [[1.0, -2.0], [0.5, 3.0]]
    result = nncards.run({"graph": graph, "steps": [
        {"kind": "predict", "inputs": {"x": x}},
        {"kind": "evaluate", "inputs": {"x": x}, "targets": {"y": x}},
    ]})
    assert result["status"] == "succeeded", result["error"]
    np.testing.assert_allclose(result["steps"][0]["outputs"]["y"], x)
    assert result["steps"][1]["metrics"]["loss"] == 0.0
    assert sys.getrecursionlimit() == limit  # raised only while the model was assembled
