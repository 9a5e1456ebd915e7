"""The Keras model of a graph: one functional model, its layers and inputs keyed by node id."""

from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass
from typing import Any

from nncards.build.validation import Analysis, check, trace
from nncards.card import Card, ModelRole, Params
from nncards.contract.errors import NncardsError, Problem, summarize
from nncards.contract.graph import Graph
from nncards.contract.limits import DEFAULT_LIMITS, Limits
from nncards.keras_objects import import_tensorflow_quietly

# Keras maps a functional model's graph by recursing once per layer along its longest path
# (keras.src.ops.function._build_map_helper): a chain of ~1,000 layers exceeds Python's default
# limit of 1,000 frames. Larger graphs are therefore assembled on a thread of their own with a
# stack big enough for a recursion limit that covers the largest graph the limits allow.
DEEP_GRAPH_NODES = 500
FRAMES_PER_NODE = 4
DEEP_STACK_BYTES = 512 * 2**20
_deep_assembly = threading.Lock()  # the recursion limit is process-wide: one raise at a time


def _on_deep_stack(function, frames: int):
    """`function()` on a thread with a `DEEP_STACK_BYTES` stack and a recursion limit of at least
    `frames`, under the caller's distribution strategy; the limit is restored afterwards."""
    import tensorflow as tf

    strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
    outcome = {}

    def target():
        try:
            with strategy.scope() if strategy is not None else contextlib.nullcontext():
                outcome["value"] = function()
        except BaseException as exc:  # re-raised on the caller's thread
            outcome["error"] = exc

    with _deep_assembly:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, frames))
        try:
            default_stack = threading.stack_size(DEEP_STACK_BYTES)
            try:
                thread = threading.Thread(target=target, name="nncards-deep-model")
                thread.start()
            finally:
                threading.stack_size(default_stack)
            thread.join()
        finally:
            sys.setrecursionlimit(limit)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


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
    analysis, problems, _ = check(graph, limits)
    return build_checked(analysis, problems, limits, seed)


def build_checked(analysis: Analysis, problems: list[Problem], limits: Limits = DEFAULT_LIMITS,
                  seed: int | None = None) -> BuiltModel:
    """`build` given the graph's `check` (its analysis and problems), which it does not do again."""
    import_tensorflow_quietly()
    import keras

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
    def assemble():
        return keras.Model(inputs=inputs, outputs=outputs, name="nncards")

    nodes = len(analysis.graph.nodes)
    model = assemble() if nodes <= DEEP_GRAPH_NODES else _on_deep_stack(assemble, FRAMES_PER_NODE * nodes + 1_000)
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
