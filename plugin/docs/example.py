"""The example of a card page: the card's smallest valid graph (`nncards.docs.smallest`) run on a
small batch (its plain Keras code comes from `nncards.card.keras_code`)."""

from __future__ import annotations

import itertools

from nncards.card import Card
from nncards.docs.smallest import smallest_graph


def _sample(shape: list, dtype: str, offset: int):
    """Deterministic small values filling a batch of 2 of `shape` (unknown dims as 3)."""
    counter = itertools.count(offset)

    def value():
        step = next(counter) % 7
        if dtype == "bool":
            return step % 2 == 0
        return step if dtype.startswith("int") else round(step * 0.5 - 1.5, 1)

    def fill(dims):
        return [fill(dims[1:]) for _ in range(dims[0])] if dims else value()

    return fill([2, *[d or 3 for d in shape]])


def example_run(card: type[Card]) -> dict:
    """A RUN of the card's smallest graph with its first example params: one training `call`
    on a batch of 2."""
    graph = smallest_graph(card)
    inputs = {node["id"]: _sample(node["params"]["shape"], node["params"].get("dtype", "float32"), index)
              for index, node in enumerate(graph["nodes"]) if node["card"] == "input"}
    return {"graph": graph, "seed": 0, "steps": [{"kind": "call", "inputs": inputs, "training": True}]}
