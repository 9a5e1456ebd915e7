"""The Keras model of a graph: one functional model, its layers and inputs keyed by node id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nncards.build.validation import check, trace
from nncards.card import Card, ModelRole, Params
from nncards.contract.errors import NncardsError, summarize
from nncards.contract.graph import Graph
from nncards.contract.limits import DEFAULT_LIMITS, Limits
from nncards.keras_objects import import_tensorflow_quietly


@dataclass(frozen=True)
class BuiltLayer:
    """A layer the graph made, with the card and parameters of the node that made it."""

    node: str
    card: type[Card]
    params: Params
    layer: Any


@dataclass(frozen=True)
class BuiltModel:
    model: Any  # keras.Model
    layers: dict[str, BuiltLayer]
    input_specs: dict[str, Params]  # the Input nodes' parameters (shape, dtype)
    cards: dict[str, type[Card]]  # every built node's card, parameters, outputs and wired inputs
    params: dict[str, Params]
    values: dict[str, dict[str, Any]]
    sockets: dict[str, dict[str, Any]]


def build(graph: Graph, limits: Limits = DEFAULT_LIMITS, seed: int | None = None) -> BuiltModel:
    """The Keras model of a valid graph; raises `NncardsError` (graph_invalid) otherwise."""
    import_tensorflow_quietly()
    import keras

    analysis, problems, _ = check(graph, limits)
    if not problems:
        if seed is not None:
            # Seeded after the check: how much randomness the check consumes depends on what
            # its memo already holds, and must not change the weights.
            keras.utils.set_random_seed(seed)
        traced = trace(analysis, limits)
        problems = traced.problems
    if problems:
        raise NncardsError("graph_invalid", f"The graph is not valid: {summarize(problems)}", problems)
    inputs = {n: traced.values[n]["output"] for n in analysis.nodes_with_role(ModelRole.INPUT)}
    outputs = {n: traced.sockets[n]["input"] for n in analysis.nodes_with_role(ModelRole.OUTPUT)}
    model = keras.Model(inputs=inputs, outputs=outputs, name="nncards")
    layers = {n: BuiltLayer(n, analysis.cards[n], analysis.params[n], v["layer"])
              for n, v in traced.values.items() if analysis.cards[n].makes_layer and "layer" in v}
    built = list(traced.values)
    return BuiltModel(model, layers, {n: analysis.params[n] for n in inputs},
                      cards={n: analysis.cards[n] for n in built}, params={n: analysis.params[n] for n in built},
                      values=traced.values, sockets=traced.sockets)


def build_model(graph: dict | Graph):
    """The `keras.Model` a graph describes."""
    graph = graph if isinstance(graph, Graph) else Graph.model_validate(graph)
    return build(graph).model
