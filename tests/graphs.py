"""Small graph builders shared by the tests."""


def node(id, card, **params):
    return {"id": id, "card": card, "params": params}


def edge(source, source_port, target, target_port):
    return {"source": source, "source_port": source_port, "target": target, "target_port": target_port}


def bn_graph(shape, bn_params=None, extra_nodes=(), extra_edges=(), input_dtype="float32"):
    """Input `x` → batch normalization `bn` → Output `y`, plus whatever is wired into `bn`."""
    return {
        "schema_version": 1,
        "nodes": [
            node("x", "input", shape=list(shape), dtype=input_dtype),
            node("bn", "layer_BatchNormalization", **(bn_params or {})),
            node("y", "output"),
            *extra_nodes,
        ],
        "edges": [
            edge("x", "output", "bn", "input"),
            edge("bn", "output", "y", "input"),
            *extra_edges,
        ],
    }
