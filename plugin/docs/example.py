"""The example of a card page: the card's smallest valid graph (`nncards.docs.smallest`) run on a
small batch, and the plain Keras code that builds the same model."""

from __future__ import annotations

import graphlib
import itertools

from nncards.card import Card, InstanceCard, LayerCard, ModelRole
from nncards.docs.smallest import smallest_graph
from nncards.contract.shorthands import BY_TYPE


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


# -- the equivalent Keras code ----------------------------------------------------------------

class Code(str):
    """A Python expression, shown as itself by `repr`."""

    def __repr__(self) -> str:
        return str(self)


def _shorthand_code(type_id: str, identifier: str) -> Code:
    shorthand = BY_TYPE[type_id][identifier]
    return Code(f"{shorthand.keras_class}({', '.join(f'{k}={v!r}' for k, v in shorthand.arguments.items())})")


def constructor_arguments(card: type[Card], node: str, params: dict, wired: dict[str, str]) -> str:
    """The keyword arguments of the card's Keras class, as the card itself computes them
    (`layer_arguments` / `resolve_instances`), limited to what the node sets or wires and what
    the card derives: the other arguments keep their Keras defaults."""
    shorthands = {key: _shorthand_code(card.input_port(key).type, value) for key, value in params.items()
                  if card.input_port(key).type in BY_TYPE and isinstance(value, str)}
    model = card.Params.model_validate(params)
    # identifiers (set or default) stay code: building them would import Keras
    model = model.model_copy(update={port.id: None for port in card.param_ports()
                                     if port.type in BY_TYPE and isinstance(getattr(model, port.id), str)})
    sockets = {port: Code(source) for port, source in wired.items()}
    if issubclass(card, LayerCard):
        arguments = card.layer_arguments(node, model, sockets)
    else:
        arguments = card.resolve_instances(model, sockets)
    arguments = {**arguments, **shorthands, **{k: v for k, v in sockets.items() if k not in arguments}}
    shown = {*params, *sockets, "name"} | (arguments.keys() - card.Params.model_fields.keys())
    return ", ".join(f"{key}={value!r}" for key, value in arguments.items() if key in shown)


def keras_code(graph: dict, cards: dict[str, type[Card]]) -> str | None:
    """Plain Keras code building the same model as `graph`, or None when a card in it has no
    direct Keras counterpart (its `build` is nncards' own)."""
    lines = ["import keras", ""]
    incoming: dict[str, dict[str, list[str]]] = {}
    values: dict[tuple[str, str], str] = {}
    for edge in graph["edges"]:
        incoming.setdefault(edge["target"], {}).setdefault(edge["target_port"], []).append(
            (edge["source"], edge["source_port"]))
    model_inputs, model_outputs = [], []
    order = graphlib.TopologicalSorter({n["id"]: [s for s, _ in itertools.chain(*incoming.get(n["id"], {}).values())]
                                        for n in graph["nodes"]}).static_order()
    nodes = {n["id"]: n for n in graph["nodes"]}
    for node in map(nodes.get, order):
        card, name, params = cards[node["card"]], node["id"], node["params"]
        wired = {port: [values[source] for source in sources] for port, sources in incoming.get(name, {}).items()}
        if card.model_role is ModelRole.INPUT:
            arguments = {"shape": tuple(params["shape"]), "name": params.get("name") or name,
                         **({"dtype": params["dtype"]} if params.get("dtype", "float32") != "float32" else {})}
            lines.append(f"{name} = keras.Input({', '.join(f'{k}={v!r}' for k, v in arguments.items())})")
            values[(name, "output")] = name
            model_inputs.append(name)
        elif card.model_role is ModelRole.OUTPUT:
            model_outputs.append((name, wired["input"][0]))
        elif issubclass(card, (LayerCard, InstanceCard)) and card.keras:
            sockets = {port: sources for port, sources in wired.items()
                       if card.input_port(port).type == "NeuralNetworkTensor"}
            arguments = constructor_arguments(card, name, params, {
                port: sources[0] if card.input_port(port).multiplicity == "1" else f"[{', '.join(sources)}]"
                for port, sources in wired.items() if port not in sockets})
            lines.append(f"{name} = {card.keras}({arguments})")
            values[(name, card.outputs[0].id if issubclass(card, InstanceCard) else "layer")] = name
            if sockets:
                variadic = "inputs" in sockets
                tensors = sockets.pop("inputs" if variadic else "input", [])
                call = [f"[{', '.join(tensors)}]"] if variadic else tensors[:1]
                call += [f"{port}={sources[0]}" for port, sources in sockets.items()]
                call += [f"{option}={params[option]!r}" for option in card.call_options if option in params]
                lines.append(f"{name}_output = {name}({', '.join(call)})")
                values[(name, "output")] = f"{name}_output"
        else:
            return None
    lines.append("")
    lines.append("model = keras.Model(")
    lines.append(f"    inputs={{{', '.join(f'{n!r}: {n}' for n in model_inputs)}}},")
    lines.append(f"    outputs={{{', '.join(f'{n!r}: {v}' for n, v in model_outputs)}}},")
    lines.append(")")
    return "\n".join(lines) + "\n"
