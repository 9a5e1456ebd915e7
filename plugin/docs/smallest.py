"""The smallest valid graph of a card, derived from its ports, for docs and catalogue-wide tests.

A card's tensor sockets are fed by Input nodes of the card's `example_input_shape` and
`example_input_dtype` (two Inputs for a variadic port), its layer sockets by the cards named in
`example_layers`, and its `output` goes to an Output node (a card whose layer only works inside
another's is wired into its `example_consumer`). A card that makes an initializer,
regularizer or constraint is wired into the matching kernel port of a Dense layer instead.
"""

from __future__ import annotations

from typing import Any

from nncards.card import Card, ModelRole
from nncards.registry import registry
from nncards.contract.types import INSTANCE_TYPES

CONSUMER = "layer_Dense"  # takes every instance type on its kernel ports


def _node(id: str, card: str, params: dict) -> dict:
    return {"id": id, "card": card, "params": params}


def _edge(source: str, source_port: str, target: str, target_port: str) -> dict:
    return {"source": source, "source_port": source_port, "target": target, "target_port": target_port}


def _input(id: str, card: type[Card]) -> dict:
    return _node(id, "input", {"shape": list(card.example_input_shape), "dtype": card.example_input_dtype})


def smallest_graph(card: type[Card], params: dict | None = None) -> dict:
    """A GRAPH in which `card` (node `n`, with `params`) is built and reaches an Output `y`."""
    params = card.examples()[0] if params is None else params
    if card.model_role is ModelRole.INPUT:
        nodes, edges = [_node("n", card.id, params), _node("y", "output", {})], [_edge("n", "output", "y", "input")]
    elif card.model_role is ModelRole.OUTPUT:
        nodes, edges = [_input("x", card), _node("n", card.id, params)], [_edge("x", "output", "n", "input")]
    elif card.outputs and card.outputs[0].type in INSTANCE_TYPES:
        consumer = registry().get(CONSUMER)
        port = next(p.id for p in consumer.inputs() if p.socket and p.type == card.outputs[0].type)
        nodes = [_input("x", consumer), _node("n", card.id, params), _node("c", CONSUMER, {"units": 2}),
                 _node("y", "output", {})]
        edges = [_edge("x", "output", "c", "input"), _edge("n", card.outputs[0].id, "c", port),
                 _edge("c", "output", "y", "input")]
    else:
        nodes, edges = [_node("n", card.id, params)], []
        for port in card.sockets:
            if port.type == "NeuralNetworkTensor" and (port.required or port.id in ("input", "inputs")):
                count = 2 if port.multiplicity == "n" else 1
                stem = "x" if port.id in ("input", "inputs") else port.id  # e.g. an attention's query and value
                for index in range(count):
                    source = f"{stem}{index}" if count > 1 else stem
                    nodes.append(_input(source, card))
                    edges.append(_edge(source, "output", "n", port.id))
            elif port.type == "NeuralNetworkLayer" and port.id in card.example_layers:
                layer_card, layer_params = card.example_layers[port.id]
                nodes.append(_node(port.id, layer_card, layer_params))
                edges.append(_edge(port.id, "layer", "n", port.id))
        last = "n"
        if card.example_consumer:  # the card's layer serves inside the consumer's
            consumer, port, consumer_params = card.example_consumer
            nodes += [_input("x", registry().get(consumer)), _node("c", consumer, consumer_params)]
            edges += [_edge("x", "output", "c", "input"), _edge("n", "layer", "c", port)]
            last = "c"
        nodes.append(_node("y", "output", {}))
        edges.append(_edge(last, "output", "y", "input"))
    return {"schema_version": 1, "nodes": nodes, "edges": edges}


def zeros(shape: list[int], dtype: str) -> Any:
    value: Any = False if dtype == "bool" else 0
    for size in reversed(shape):
        value = [value] * size
    return value


def smallest_run(card: type[Card], params: dict | None = None, batch: int = 2) -> dict:
    """A RUN of the card's smallest graph with one `predict` step on a batch of zeros."""
    graph = smallest_graph(card, params)
    inputs = {n["id"]: zeros([batch, *(d or 3 for d in n["params"]["shape"])], n["params"].get("dtype", "float32"))
              for n in graph["nodes"] if n["card"] == "input"}
    return {"graph": graph, "seed": 0, "steps": [{"kind": "predict", "inputs": inputs, "batch_size": batch}]}
