"""Importing a Keras model as an editable graph, and its weights as a RUN's `weights`.

The model file is read as data only: the `.keras` zip's `config.json` (or a bare JSON config) is
walked as JSON, and `model.weights.h5` as arrays. Keras 2's files (a legacy `.h5` model, a JSON
config with an `.h5` weights file) are read by `keras2`, their configs rewritten in Keras 3's
form. Nothing named in the file is ever looked up as code: a layer becomes a node only through
the card that declares its Keras class, with its arguments turned into that card's params by
the card (`params_from_arguments`). Initializers, regularizers and constraints become shorthand
identifiers when they equal one, companion instance cards wired into the socket otherwise. A layer applied several times becomes its card
once and `apply_layer` nodes after; nested functional and Sequential models are flattened.

Anything a graph cannot express (a custom class, a `Lambda`, a Keras operation without a card,
an argument a card lacks) is collected, and the import is refused as a whole, with one problem
per layer.
"""

from __future__ import annotations

import functools
import inspect
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

from nncards.card import Card
from nncards.cards.exclusions import EXCLUDED, UNCARDED_ARGUMENTS
from nncards.contract.errors import ErrorCode, NncardsError, Problem, summarize
from nncards.contract.shorthands import BY_TYPE
from nncards.contract.types import INSTANCE_TYPES
from nncards.interchange.keras2 import (KERAS_TENSOR, MODEL_CLASSES, LegacyWeight, check_hdf5, is_hdf5,
                                        is_keras2, keras3_config, read_hdf5)
from nncards.interchange.layout import place
from nncards.registry import registry

INSTANCE_MODULES = {"keras.initializers", "keras.regularizers", "keras.constraints"}
# Arguments every Keras layer takes from `keras.layers.Layer`, with their defaults.
BASE_DEFAULTS = {"trainable": True, "dtype": "float32", "autocast": True, "activity_regularizer": None}
# A `.keras` member larger than this once unpacked is refused (a zip may pack far more than it weighs).
MAX_UNPACKED_BYTES = 4 * 2**30


@dataclass(frozen=True)
class KerasFile:
    """A model file read as data: its configuration (JSON) and the bytes of its weights file
    (Keras 3's), or the arrays of a Keras 2 one."""

    config: dict
    weights: bytes | None = None
    legacy_weights: list[LegacyWeight] | None = None

    @property
    def has_weights(self) -> bool:
        return self.weights is not None or self.legacy_weights is not None


@dataclass
class Imported:
    """The graph of an imported model, and where each layer node's weights sit in the weights file."""

    graph: dict
    weight_paths: dict[str, str] = field(default_factory=dict)
    layer_nodes: dict[str, str] = field(default_factory=dict)  # Keras layer name → the node that made it


def _unreadable(message: str) -> NncardsError:
    """A file that is no Keras model: a bad request (a model it cannot express is refused apart)."""
    return NncardsError(ErrorCode.BAD_REQUEST, message)


def read_model_file(data: bytes, with_weights: bool = False) -> KerasFile:
    """The configuration (and weights) of a `.keras` file, a Keras 2 `.h5` file, or a Keras JSON
    config; with `with_weights`, a file without weights is refused."""
    if is_hdf5(data):
        saved = read_hdf5(data, MAX_UNPACKED_BYTES)
        if saved.config is None:
            raise _unreadable("the HDF5 file holds weights only (`save_weights`): import the model's JSON "
                              "config with this file as its weights")
        source = KerasFile(saved.config, legacy_weights=saved.weights)
    elif data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                config = _json_config(_member(archive, "config.json"))
                names = set(archive.namelist())
                weights = _member(archive, "model.weights.h5") if "model.weights.h5" in names else None
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise _unreadable(f"not a readable .keras file: {exc}") from None
        source = KerasFile(config, weights)
    else:
        source = KerasFile(_json_config(data))
    if not isinstance(source.config, dict) or not isinstance(source.config.get("config"), dict) \
            or "class_name" not in source.config:
        raise _unreadable("a Keras model config has a `class_name` and a `config` object")
    if with_weights and not source.has_weights:
        raise _without_weights()
    return source


def _without_weights() -> NncardsError:
    return _unreadable("the file holds no weights (a JSON config, or a .keras or .h5 file saved without them)")


def screen_model_file(data: bytes, with_weights: bool = False) -> None:
    """Refuse a file that is no model as `read_model_file` would, except that an HDF5 file is
    only recognized, not opened: the HDF5 library then reads it in a worker process, where a
    file crafted to crash it stops that process alone."""
    if not is_hdf5(data):
        read_model_file(data, with_weights)


def _member(archive: zipfile.ZipFile, name: str) -> bytes:
    """A file of the archive, unless it unpacks to more than a model file could hold."""
    if archive.getinfo(name).file_size > MAX_UNPACKED_BYTES:
        raise NncardsError(ErrorCode.TOO_LARGE, f"{name} unpacks to more than {MAX_UNPACKED_BYTES} bytes")
    return archive.read(name)


def _json_config(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _unreadable(f"neither a .keras file nor a Keras JSON config: {exc}") from None


# -- Keras' own facts, read from its classes (never from the file) ------------------------------

@functools.cache
def _keras_defaults(card: type[Card]) -> dict[str, Any]:
    """Default arguments of a card's Keras class: its constructor's (the base layer's included),
    and for arguments only its config names, what a layer made from the card's example writes."""
    from nncards.keras_objects import keras_attribute

    keras_class = keras_attribute(card.keras)
    defaults = dict(BASE_DEFAULTS) if card.keras.startswith("keras.layers.") else {}
    for name, parameter in inspect.signature(keras_class).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            defaults[name] = _json(parameter.default)
    example = card.Params.model_validate(card.examples()[0])
    try:
        made = keras_class(**card.resolve_instances(example, {}))
    except (TypeError, ValueError):  # a class that needs wired objects (a wrapper's layer)
        return defaults
    config = _json(made.get_config())
    return {**{key: value for key, value in config.items() if key not in card.Params.model_fields}, **defaults}


@functools.cache
def _call_defaults(keras_path: str) -> dict[str, Any]:
    """Default arguments of a Keras layer's `call`: Keras records `training` at its default in
    every call of a functional model, which is no choice of the model's."""
    from nncards.keras_objects import keras_attribute

    parameters = inspect.signature(keras_attribute(keras_path).call).parameters
    return {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}


@functools.cache
def _shorthand_configs(type_id: str) -> dict[str, tuple[str, dict]]:
    """Each shorthand identifier of a type → (Keras class path, the config Keras writes for it)."""
    return {identifier: (shorthand.keras_class, _json(shorthand.build().get_config()))
            for identifier, shorthand in BY_TYPE[type_id].items()}


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list)) if isinstance(value, (tuple, list, dict)) else value


def _dtype_name(value: Any) -> Any:
    """A layer's dtype as a name: Keras 3 writes a dtype policy object."""
    if isinstance(value, dict) and value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
        return value.get("config", {}).get("name")
    return value


def _history(value: Any) -> tuple[str, int, int] | None:
    if isinstance(value, dict) and value.get("class_name") == KERAS_TENSOR:
        name, node_index, tensor_index = value["config"]["keras_history"]
        return name, node_index, tensor_index
    return None


def _snake_case(name: str) -> str:
    """Keras' name for a layer's group in the weights file (`naming.to_snake_case`)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name


class WeightPaths:
    """Where Keras' saver puts each layer of one model: `layers/<snake_case class>[_<n>]`."""

    def __init__(self, prefix: str):
        self.prefix, self.used = prefix, {}

    def next(self, class_name: str) -> str:
        name = _snake_case(class_name)
        count = self.used.get(name)
        self.used[name] = 0 if count is None else count + 1
        return f"{self.prefix}layers/{name}" + ("" if count is None else f"_{count + 1}")


# -- the importer -------------------------------------------------------------------------------

Ref = tuple[str, str]  # (node id, output port)


class Importer:
    """Walks one model config, adding nodes and edges; collects what it cannot express."""

    def __init__(self, cards: dict[str, type[Card]], weights: bytes | None = None):
        self.cards = cards
        self.weights = weights  # the weights file, for params a model keeps as weights
        self.state_read: set[str] = set()  # layers (by weights path) whose weights became params
        self.by_keras = {card.keras: card for card in cards.values() if card.keras}
        self.nodes: list[dict] = []
        self.edges: list[dict] = []
        self.problems: list[Problem] = []
        self.weight_paths: dict[str, str] = {}
        self.made: dict[str, str] = {}  # weights path of a layer object → the node that made it
        self.layer_nodes: dict[str, str] = {}  # Keras layer name → the node that made it
        self.ids: set[str] = set()

    # -- nodes ------------------------------------------------------------------------------

    def node_id(self, wanted: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", wanted)[:60] or "node"
        candidate, count = base, 1
        while candidate in self.ids:
            count += 1
            candidate = f"{base}_{count}"
        self.ids.add(candidate)
        return candidate

    def add_node(self, node_id: str, card: str, params: dict) -> str:
        self.nodes.append({"id": node_id, "card": card, "params": params})
        return node_id

    def wire(self, source: Ref, target: str, port: str) -> None:
        self.edges.append({"source": source[0], "source_port": source[1], "target": target, "target_port": port})

    def refuse(self, name: str, class_name: str, reason: str) -> None:
        self.problems.append(Problem(code=ErrorCode.UNSUPPORTED_LAYER, node=name, received=class_name,
                                     message=f"layer {name!r} ({class_name}): {reason.rstrip('.')}"))

    # -- models -----------------------------------------------------------------------------

    def model(self, entry: dict, given: list[Ref] | None = None, prefix: str = "") -> list[tuple[str, Ref]]:
        """Add a model's layers; returns its outputs as (key, tensor). `given` feeds the inputs of a
        nested model instead of Input nodes."""
        config = entry["config"]
        if entry["class_name"] == "Sequential":
            return self.sequential(config, given, prefix)
        if isinstance(config.get("layers"), list):
            return self.functional(config, given, prefix)
        name = config.get("name", entry["class_name"])
        self.refuse(name, entry["class_name"], "a model without a layer list (a subclassed model: its "
                    "structure is Python code, not configuration) cannot be flattened")
        return [(None, (name, "output"))]

    def functional(self, config: dict, given: list[Ref] | None, prefix: str) -> list[tuple[str, Ref]]:
        layers = {layer["name"]: layer for layer in config["layers"]}
        paths = WeightPaths(prefix)
        where = {layer["name"]: paths.next(layer["class_name"]) for layer in config["layers"]}
        produced: dict[tuple[str, int], list[Ref]] = {}
        inputs = _structure(config["input_layers"])
        for index, (key, (name, _, _)) in enumerate(inputs):
            if given is not None:
                produced[(name, 0)] = [given[index]]
            else:
                produced[(name, 0)] = [self.input_node(key or name, layers[name])]
        pending = [(layer, index, call) for layer in config["layers"] if layer["class_name"] != "InputLayer"
                   for index, call in enumerate(layer.get("inbound_nodes", []))]
        while pending:
            # a layer's calls in their order, so that its first call makes its card
            ready = [(layer, index, call) for layer, index, call in pending
                     if all((n, i) in produced for n, i, _ in _tensors(call))
                     and (index == 0 or (layer["name"], index - 1) in produced)]
            if not ready:
                names = sorted({layer["name"] for layer, _, _ in pending})
                raise _unreadable(f"the model's connections cannot be ordered (layers {', '.join(names)})")
            for layer, index, call in ready:
                pending.remove((layer, index, call))
                resolve = functools.partial(_pick, produced)
                produced[(layer["name"], index)] = self.call(layer, call, resolve, where[layer["name"]])
        return [(key, _pick(produced, history)) for key, history in _structure(config["output_layers"])]

    def sequential(self, config: dict, given: list[Ref] | None, prefix: str) -> list[tuple[str, Ref]]:
        layers = list(config["layers"])
        paths = WeightPaths(prefix)
        if layers and layers[0]["class_name"] == "InputLayer":
            first = layers.pop(0)
            current = given[0] if given else self.input_node(first["config"]["name"], first)
        elif given:
            current = given[0]
        else:
            shape = (config.get("build_input_shape") or [None])
            entry = {"class_name": "InputLayer", "config": {"batch_shape": shape, "name": "input_layer"}}
            current = self.input_node("input_layer", entry)
        for layer in layers:
            name = layer["config"].get("name", layer["class_name"])
            call = {"args": [{"class_name": KERAS_TENSOR, "config": {"keras_history": ["previous", 0, 0]}}],
                    "kwargs": {}}
            outputs = self.call({**layer, "name": name}, call, lambda history, now=current: now,
                                paths.next(layer["class_name"]))
            current = outputs[0]
        return [(None, current)]

    def input_node(self, key: str, entry: dict) -> Ref:
        config = entry["config"]
        name = config.get("name", key)
        shape = config.get("batch_shape") or [None, *(config.get("shape") or [])]
        if config.get("sparse") or config.get("ragged"):
            self.refuse(name, "InputLayer", "sparse and ragged inputs have no card")
        node_id = self.node_id(key)
        params = {"shape": list(shape[1:])}
        if config.get("dtype", "float32") != "float32":
            params["dtype"] = config["dtype"]
        if name != node_id:
            params["name"] = name
        return self.add_node(node_id, "input", params), "output"

    def outputs(self, outputs: list[tuple[str | None, Ref]]) -> None:
        for key, tensor in outputs:
            self.wire(tensor, self.add_node(self.node_id(key or f"{tensor[0]}_output"), "output", {}), "input")

    # -- layers -----------------------------------------------------------------------------

    def call(self, layer: dict, call: dict, resolve, path: str) -> list[Ref]:
        """One application of a layer: its card node (first time) or an `apply_layer` node."""
        name, class_name = layer["name"], layer["class_name"]
        if class_name in MODEL_CLASSES or layer.get("module", "").startswith("keras.src.models"):
            fixed = {key: value for key, value in call.get("kwargs", {}).items()
                     if value is not None and not list(_flat_histories(value))}
            if fixed:  # e.g. a backbone called with training=False: flattened, its layers follow the graph's call
                self.refuse(name, class_name, f"called with {', '.join(f'{k}={v!r}' for k, v in fixed.items())}, "
                            "which a graph cannot express (its layers would follow the call of the whole model)")
            given = [resolve(h) for h in _flat_histories(call.get("args", []))]
            return [tensor for _, tensor in self.model(layer, given, f"{path}/")]
        card = self.card_for(layer)
        if card is None:
            return [(name, "output")]
        tensor_outputs = [p.id for p in card.outputs if p.type == "NeuralNetworkTensor"]
        if path in self.made:
            return [(self.apply_again(name, class_name, card, call, resolve, path), "output")]
        node_id = self.node_id(name)
        params = self.params(card, self.with_state(card, layer["config"], name, class_name, path),
                             node_id, name, class_name)
        if card.input_port("name") is not None and name != node_id:
            params["name"] = name
        params.update(self.call_options(card, call, name, class_name))
        self.add_node(node_id, card.id, params)
        self.made[path] = node_id
        self.layer_nodes[name] = node_id
        if card.makes_layer and path not in self.state_read:
            self.weight_paths[node_id] = path
        self.wire_call(node_id, name, class_name, card, call, resolve)
        return [(node_id, port) for port in tensor_outputs]

    def apply_again(self, name, class_name, card, call, resolve, path) -> str:
        tensors = list(_tensors(call))
        if len(tensors) != 1 or any(v is not None for k, v in call.get("kwargs", {}).items()
                                    if not _history(v) and k not in ("training",)):
            self.refuse(name, class_name, "applied again to several tensors; apply_layer takes one")
        node_id = self.node_id(f"{self.made[path]}.again")
        self.add_node(node_id, "apply_layer", {})
        self.wire((self.made[path], "layer"), node_id, "layer")
        if tensors:
            self.wire(resolve(tensors[0][2]), node_id, "input")
        return node_id

    def with_state(self, card: type[Card], config: dict, name: str, class_name: str, path: str) -> dict:
        """The config with the card's state params the model learned read from its weights."""
        learned = [port for port in card.state_params if config.get(port) is None]
        if not learned:
            return config
        if self.weights is None:
            self.refuse(name, class_name, f"its {' and '.join(learned)} were learned and are kept as weights, "
                        "which a JSON config does not hold: import the .keras file")
            return config
        import h5py
        import numpy as np

        with h5py.File(io.BytesIO(self.weights), "r") as weights:
            saved = weights.get(f"{path}/vars")
            values = [np.ravel(saved[str(i)][()]).tolist() for i in range(len(learned))] if saved else None
        if values is None:
            self.refuse(name, class_name, f"its learned {' and '.join(learned)} are missing from the weights file")
            return config
        self.state_read.add(path)
        return {**config, **dict(zip(learned, values))}

    def card_for(self, layer: dict) -> type[Card] | None:
        name, class_name, module = layer["name"], layer["class_name"], layer.get("module", "")
        if module.startswith("keras.src.ops") or module.startswith("keras.ops"):
            self.refuse(name, class_name, f"a Keras operation ({module}.{class_name}) applied to tensors "
                        "has no card; write it as a layer")
        elif module not in ("keras.layers", "") or layer.get("registered_name") not in (None, class_name):
            self.refuse(name, class_name, f"custom class from {module or 'an unknown module'} "
                        f"(registered as {layer.get('registered_name')!r}): its code is not part of the model file")
        elif f"keras.layers.{class_name}" not in self.by_keras:
            self.refuse(name, class_name, f"no card: {EXCLUDED.get(class_name, 'nncards has none for this class')}")
        else:
            return self.by_keras[f"keras.layers.{class_name}"]
        return None

    def params(self, card: type[Card], config: dict, node_id: str, name: str, class_name: str) -> dict:
        """The card's params for a Keras config; instance arguments become shorthands or companions."""
        arguments = {key: value for key, value in config.items() if key != "name"}
        if "dtype" in arguments:
            arguments["dtype"] = _dtype_name(arguments["dtype"])
        for port in card.inputs():
            value = arguments.get(port.id)
            if port.type in INSTANCE_TYPES and port.id in arguments:
                arguments[port.id] = self.instance(port.type, value, node_id, port.id, port.default, name)
            elif port.type == "NeuralNetworkLayer" and isinstance(value, dict):
                arguments.pop(port.id)
                inner = self.detached_layer(value, f"{node_id}.{port.id}")
                if inner is not None:
                    self.wire((inner, "layer"), node_id, port.id)
        return self.card_params(card, arguments, name, class_name)

    def card_params(self, card: type[Card], arguments: dict, name: str, class_name: str) -> dict:
        fields = card.Params.model_fields
        defaults = _keras_defaults(card)
        for key, value in arguments.items():
            if key not in fields and key not in {p.id for p in card.sockets} and defaults.get(key, value) != value:
                reason = UNCARDED_ARGUMENTS.get(f"{class_name}.{key}") or UNCARDED_ARGUMENTS.get(key) or ""
                self.refuse(name, class_name, f"argument {key}={value!r} has no param on card {card.id}. {reason}".strip())
            elif key not in fields and key not in defaults and value is not None:
                self.refuse(name, class_name, f"argument {key}={value!r} is unknown to card {card.id}")
        params = card.params_from_arguments(arguments)
        _, problems = card.validate_params(name, params)
        for problem in problems:
            self.refuse(name, class_name, f"card {card.id} does not take it: {problem.message}")
        return params

    def instance(self, type_id: str, value: Any, node_id: str, port: str, default: Any, name: str) -> str | None:
        """A shorthand identifier for an initializer/regularizer/constraint argument, or the port's
        default (left out of the params) with a companion card wired into the socket."""
        if value is None or isinstance(value, str) and value in BY_TYPE[type_id]:
            return value
        if not isinstance(value, dict) or "class_name" not in value:
            self.refuse(name, "argument", f"{port}={value!r} is not a Keras object configuration")
            return None
        keras_path = f"{value.get('module', '')}.{value['class_name']}"
        config = value.get("config", {})
        for identifier, (shorthand_class, shorthand_config) in _shorthand_configs(type_id).items():
            # a key missing from the config (written by an older Keras) takes its default
            if shorthand_class == keras_path and {**shorthand_config, **config} == shorthand_config:
                return identifier
        card = self.by_keras.get(keras_path)
        if value.get("module") not in INSTANCE_MODULES or card is None or value.get("registered_name") not in (
                None, value["class_name"]):
            self.refuse(name, value["class_name"], f"{port} is {keras_path}, which has no card")
            return None
        companion = self.node_id(f"{node_id}.{port}")
        self.add_node(companion, card.id, self.card_params(card, config, name, value["class_name"]))
        self.wire((companion, card.outputs[0].id), node_id, port)
        return default

    def detached_layer(self, entry: dict, wanted: str) -> str | None:
        """A layer given to another as an argument (a wrapper's layer): its card, not applied."""
        entry = {**entry, "name": entry.get("config", {}).get("name", wanted)}
        card = self.card_for(entry)
        if card is None:
            return None
        node_id = self.node_id(entry["name"])
        params = self.params(card, entry["config"], node_id, entry["name"], entry["class_name"])
        return self.add_node(node_id, card.id, params)

    def wire_call(self, node_id: str, name: str, class_name: str, card: type[Card], call: dict, resolve) -> None:
        """Edges for the tensors a layer is called on: positional ones fill the tensor sockets in
        order (a list fills a variadic socket), keyword ones their socket by name."""
        sockets = [p for p in card.sockets if p.type == "NeuralNetworkTensor"]
        for position, argument in enumerate(call.get("args", [])):
            if position >= len(sockets):
                self.refuse(name, class_name, f"called with {position + 1} tensors; card {card.id} takes {len(sockets)}")
                break
            self.wire_argument(node_id, sockets[position].id, argument, resolve)
        for key, argument in call.get("kwargs", {}).items():
            socket = card.input_port(key)
            if socket is not None and socket.type == "NeuralNetworkTensor":
                self.wire_argument(node_id, key, argument, resolve)
            elif key not in getattr(card, "call_options", ()) and argument is not None \
                    and argument != _call_defaults(card.keras).get(key):
                self.refuse(name, class_name, f"called with {key}={argument!r}, which a graph cannot express")

    def call_options(self, card: type[Card], call: dict, name: str, class_name: str) -> dict:
        """The params a card passes to its layer's call (e.g. an attention's causal mask), read
        from the keywords the call was recorded with."""
        options = getattr(card, "call_options", ())
        given = card.params_from_arguments({key: value for key, value in call.get("kwargs", {}).items()
                                             if key in options})
        _, problems = card.validate_params(name, given) if given else (None, [])
        for problem in problems:
            if problem.port in given:
                self.refuse(name, class_name, f"card {card.id} does not take its call option: {problem.message}")
        return given

    def wire_argument(self, node_id: str, port: str, argument: Any, resolve) -> None:
        for history in _flat_histories(argument):
            self.wire(resolve(history), node_id, port)


def _structure(value: Any) -> list[tuple[str | None, tuple[str, int, int]]]:
    """Inputs or outputs of a functional config as (key, history): a dict, a list or a single one."""
    if isinstance(value, dict):
        return [(key, tuple(history)) for key, history in value.items()]
    if len(value) == 3 and isinstance(value[0], str):
        return [(None, tuple(value))]
    return [(None, tuple(history)) for history in value]


def _flat_histories(value: Any):
    history = _history(value)
    if history is not None:
        yield history
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _flat_histories(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _flat_histories(item)


def _tensors(call: dict):
    """Every (layer, node index, history) a call reads, in order."""
    for history in _flat_histories([call.get("args", []), call.get("kwargs", {})]):
        yield history[0], history[1], history


def _pick(produced: dict, history: tuple[str, int, int]) -> Ref:
    name, node_index, tensor_index = history
    outputs = produced[(name, node_index)]
    # a refused layer stands in with one tensor, whichever of its outputs is read
    return outputs[tensor_index] if tensor_index < len(outputs) else outputs[0]


def import_config(config: dict, weights: bytes | None = None) -> Imported:
    """The graph of a Keras model config; raises `NncardsError` (`import_unsupported`) listing
    every layer it cannot express, or `bad_request` for a config it cannot read. `weights`, the
    model's weights file, is read for the params a model keeps as weights (learned statistics).
    A Keras 2 config is read in Keras 3's form (`keras2.keras3_config`)."""
    importer = Importer(registry().cards, weights)
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise _unreadable("a Keras model config has a `class_name` and a `config` object")
    try:
        if is_keras2(config):
            config, problems = keras3_config(config)
            importer.problems.extend(problems)
        outputs = importer.model(config)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise _unreadable(f"the model configuration is malformed: {type(exc).__name__}: {exc}") from None
    importer.outputs(outputs)
    if importer.problems:
        count = len({p.node for p in importer.problems})
        raise NncardsError(ErrorCode.IMPORT_UNSUPPORTED, f"{count} layer(s) of the model cannot be expressed as cards, "
                       f"nothing was imported: {summarize(importer.problems)}", importer.problems)
    graph = {"schema_version": 1, "nodes": importer.nodes, "edges": importer.edges}
    place(graph)
    return Imported(graph, importer.weight_paths, importer.layer_nodes)


def load_weights(layers: dict[str, Any], imported: Imported, weights: bytes) -> None:
    """Load the model's weights into the layers nncards built from the imported graph (by node
    id): each reads its variables from the place Keras' saver wrote the original layer, with
    Keras' own reader (the weights file holds arrays only, and names no code)."""
    from keras.src.saving.saving_lib import H5IOStore, _load_state

    store = H5IOStore(io.BytesIO(weights), mode="r")
    try:
        for node, path in imported.weight_paths.items():
            _load_state(layers[node], store, None, inner_path=path, visited_saveables=set())
    finally:
        store.close()


def _built_layers(imported: Imported) -> dict[str, Any]:
    """The layers nncards builds from the imported graph, by node id."""
    from nncards.build.model import build
    from nncards.contract.graph import Graph

    return {node: built.layer for node, built in build(Graph.model_validate(imported.graph)).layers.items()}


def import_weights(imported: Imported, weights: bytes) -> dict[str, dict[str, Any]]:
    """The model's weights as numpy arrays keyed by node id, then weight short name (as a RUN's
    `weights` and a RUN RESULT's `layers` name them)."""
    import numpy as np

    from nncards.execute.runner import weight_names

    layers = _built_layers(imported)
    load_weights(layers, imported, weights)
    found = {node: {name: np.asarray(v.numpy()) for name, v in weight_names(layers[node]).items()}
             for node in imported.weight_paths}
    return {node: values for node, values in found.items() if values}


def _legacy_destination(imported: Imported, weight: LegacyWeight) -> tuple[str | None, str]:
    """The node and weight short name of a Keras 2 weight: its name's last part naming a layer
    of the model (an enclosing model's or name scope's parts come before it), or its group."""
    parts = weight.path
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] in imported.layer_nodes:
            return imported.layer_nodes[parts[index]], "/".join(parts[index + 1:])
    return imported.layer_nodes.get(weight.group), "/".join(parts[1:]) or parts[0]


def import_legacy_weights(imported: Imported, weights: list[LegacyWeight]) -> dict[str, dict[str, Any]]:
    """Keras 2's weights as numpy arrays keyed by node id, then weight short name, in the shapes
    nncards' layers hold them. Every weight of the file must land in the model and every weight
    of the model must be in the file, else the file does not fit the model (`bad_request`)."""
    import numpy as np

    from nncards.execute.runner import weight_names

    layers = _built_layers(imported)
    variables = {node: weight_names(layer) for node, layer in layers.items() if layer.weights}
    found: dict[str, dict[str, Any]] = {}
    for weight in weights:
        node, short = _legacy_destination(imported, weight)
        variable = variables.get(node, {}).get(short)
        if variable is None:
            raise _unreadable(f"the weight {weight.name} (of {weight.group}) has no place in the imported model")
        value = np.asarray(weight.value)
        if value.shape != tuple(variable.shape):
            # Keras 2 keeps a ghost-batch or multi-axis batch normalization's per-feature weights in
            # the input's rank, (1, …, C, …); the card holds them flat, in C order over the axes
            if len(variable.shape) != 1 or value.size != variable.shape[0]:
                raise _unreadable(f"the weight {weight.name} has shape {list(value.shape)}; "
                                  f"node {node!r} holds {short} with shape {list(variable.shape)}")
            value = value.reshape(-1)
        found.setdefault(node, {})[short] = value.astype(variable.dtype)
    for node, names in variables.items():
        missing = sorted(set(names) - set(found.get(node, {})))
        if missing:
            raise _unreadable(f"the weights file has no {', '.join(missing)} for node {node!r}")
    return found


def import_model(data: bytes, with_weights: bool = False, weights_file: bytes | None = None) -> dict:
    """The GRAPH of a `.keras` file, Keras 2 `.h5` file or Keras JSON config; with weights, a RUN
    holding the graph and the model's weights (base64 arrays). `weights_file`, a Keras 2 HDF5
    weights file (`save_weights`), gives the weights of a JSON config."""
    from nncards.contract import arrays

    source = read_model_file(data)
    if weights_file is not None:
        if source.has_weights:
            raise _unreadable("the model file holds its own weights; give a weights file with a JSON config only")
        saved = read_hdf5(weights_file, MAX_UNPACKED_BYTES)
        if saved.weights is None:
            raise _unreadable("the weights file holds no Keras weights")
        source = KerasFile(source.config, legacy_weights=saved.weights)
        with_weights = True
    if with_weights and not source.has_weights:
        raise _without_weights()
    if source.weights is not None:  # read by Keras' reader, which would follow links out of the file
        check_hdf5(source.weights, MAX_UNPACKED_BYTES)
    imported = import_config(source.config, source.weights)
    if not with_weights:
        return imported.graph
    if source.legacy_weights is not None:
        weights = import_legacy_weights(imported, source.legacy_weights)
    else:
        weights = import_weights(imported, source.weights)
    return {"graph": imported.graph,
            "weights": {node: {name: arrays.encode(value, True) for name, value in values.items()}
                        for node, values in weights.items()}}
