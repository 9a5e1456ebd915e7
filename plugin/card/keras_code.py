"""Plain Keras code for a graph: a script of the functional API that builds the same model.

Used by the card pages (`nncards.docs`) and by `nncards export --to python`. Every argument comes
from the card itself (`layer_arguments` / `resolve_instances`), limited to what the node sets or
wires and what the card derives, so the other arguments keep their Keras defaults. One line per
layer: a layer is named apart from its call only when its instance is wired on (shared by
`apply_layer`, wrapped by another layer).
"""

from __future__ import annotations

import graphlib
import itertools
import keyword
import re

from nncards.card.base import Card, InstanceCard, LayerCard, ModelRole
from nncards.contract.shorthands import BY_TYPE


class Code(str):
    """A Python expression, shown as itself by `repr`."""

    def __repr__(self) -> str:
        return str(self)


class NoKerasCounterpart(ValueError):
    """A node whose card builds something of nncards' own, which plain Keras code cannot write."""

    def __init__(self, node: str, card: str):
        super().__init__(f"node {node!r}: card {card} has no plain Keras counterpart")
        self.node, self.card = node, card


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


class _Names:
    """Python variable names for node ids: ids may hold `.` and `-`, or be keywords."""

    def __init__(self):
        self.taken = {"keras", "model"}

    def new(self, wanted: str) -> str:
        name = re.sub(r"\W", "_", wanted)
        if not name or name[0].isdigit() or keyword.iskeyword(name):
            name = f"n_{name}"
        candidate = name
        for count in itertools.count(2):
            if candidate not in self.taken:
                break
            candidate = f"{name}_{count}"
        self.taken.add(candidate)
        return candidate


def _order(graph: dict, incoming: dict) -> list[dict]:
    nodes = {n["id"]: n for n in graph["nodes"]}
    sources = {n: [s for s, _ in itertools.chain(*incoming.get(n, {}).values())] for n in nodes}
    return [nodes[n] for n in graphlib.TopologicalSorter(sources).static_order()]


def keras_code(graph: dict, cards: dict[str, type[Card]]) -> str:
    """Plain Keras code building the same model as `graph` (a valid one); raises
    `NoKerasCounterpart` for a node whose card's `build` is nncards' own."""
    incoming: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for edge in graph["edges"]:
        incoming.setdefault(edge["target"], {}).setdefault(edge["target_port"], []).append(
            (edge["source"], edge["source_port"]))
    used = {(e["source"], e["source_port"]) for e in graph["edges"]}
    names, values = _Names(), {}
    lines, model_inputs, model_outputs = ["import keras", ""], [], []
    for node in _order(graph, incoming):
        card, node_id, params = cards[node["card"]], node["id"], node["params"]
        wired = {port: [values[source] for source in sources] for port, sources in incoming.get(node_id, {}).items()}
        if card.model_role is ModelRole.INPUT:
            arguments = {"shape": tuple(params["shape"]), "name": params.get("name") or node_id,
                         **({"dtype": params["dtype"]} if params.get("dtype", "float32") != "float32" else {})}
            variable = names.new(node_id)
            lines.append(f"{variable} = keras.Input({', '.join(f'{k}={v!r}' for k, v in arguments.items())})")
            values[(node_id, "output")] = variable
            model_inputs.append((node_id, variable))
        elif card.model_role is ModelRole.OUTPUT:
            model_outputs.append((node_id, wired["input"][0]))
        elif card.applies_wired_layer:
            variable = names.new(node_id)
            lines.append(f"{variable} = {wired['layer'][0]}({wired['input'][0]})")
            values[(node_id, "output")] = variable
        elif issubclass(card, (LayerCard, InstanceCard)) and card.keras and card.keras.startswith("keras."):
            lines.extend(_layer_lines(card, node_id, params, wired, used, names, values))
        else:
            raise NoKerasCounterpart(node_id, card.id)
    lines += ["", "model = keras.Model(",
              f"    inputs={{{', '.join(f'{n!r}: {v}' for n, v in model_inputs)}}},",
              f"    outputs={{{', '.join(f'{n!r}: {v}' for n, v in model_outputs)}}},", ")"]
    return "\n".join(lines) + "\n"


def _layer_lines(card, node_id, params, wired, used, names, values) -> list[str]:
    """The line that makes (and applies) one layer or instance, two when the layer is also wired on."""
    tensors = {port: sources for port, sources in wired.items()
               if card.input_port(port).type == "NeuralNetworkTensor"}
    objects = {port: sources[0] if card.input_port(port).multiplicity == "1" else f"[{', '.join(sources)}]"
               for port, sources in wired.items() if port not in tensors}
    construct = f"{card.keras}({constructor_arguments(card, node_id, params, objects)})"
    if issubclass(card, InstanceCard):
        variable = names.new(node_id)
        values[(node_id, card.outputs[0].id)] = variable
        return [f"{variable} = {construct}"]
    lines = []
    if (node_id, "layer") in used or not tensors:
        layer = names.new(f"{node_id}_layer" if tensors else node_id)
        values[(node_id, "layer")] = layer
        lines.append(f"{layer} = {construct}")
        construct = layer
    if tensors:
        variadic = "inputs" in tensors
        first = tensors.pop("inputs" if variadic else "input", [])
        call = [f"[{', '.join(first)}]"] if variadic else first[:1]
        call += [f"{port}={sources[0] if len(sources) == 1 else '[' + ', '.join(sources) + ']'}"
                 for port, sources in tensors.items()]
        call += [f"{option}={params[option]!r}" for option in card.call_options if option in params]
        outputs = [p.id for p in card.outputs if p.type == "NeuralNetworkTensor"]
        unpacked = [port for port in outputs if (node_id, port) in used and port != "output"]
        targets = [names.new(node_id if port == "output" else f"{node_id}_{port}")
                   for port in (outputs if unpacked else ["output"])]
        values.update({(node_id, port): variable for port, variable in zip(outputs, targets)})
        lines.append(f"{', '.join(targets)} = {construct}({', '.join(call)})")
    return lines
