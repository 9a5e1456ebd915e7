"""The card model: a card is declared once and everything else derives from the declaration.

A card declares a Pydantic parameter model (its literal inputs: defaults, bounds, enums, help),
its socket-only ports (tensors, layer instances), its outputs, title, category path, help and,
for Keras-backed cards, the Keras class. From that come the CARD JSON of CONTRACT §3, parameter
validation, and the object the executor builds.

Card modules must not import TensorFlow or Keras at import time; Keras is reached through
`keras_attribute` inside `build`.
"""

from __future__ import annotations

import functools
import math
from enum import StrEnum
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from nncards.keras_objects import keras_attribute
from nncards.contract.errors import Problem
from nncards.contract.shorthands import BY_TYPE, Shorthand
from nncards.contract.catalog import CardInfo, PortInfo
from nncards.contract.types import INSTANCE_TYPES, TYPES, TypeId


class ModelRole(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


@dataclass(frozen=True)
class Port:
    """One input or output of a card (the PORT object of CONTRACT §3)."""

    id: str
    type: str
    text: str
    help: str
    required: bool = False
    multiplicity: Literal["1", "n"] = "1"
    literal: bool = False
    socket: bool = True
    default: Any = None

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"port {self.id!r}: unknown type id {self.type!r}")
        object.__setattr__(self, "type", TypeId(self.type))

    def info(self) -> PortInfo:
        return PortInfo(id=self.id, text=self.text, type=self.type, help=self.help,
                        multiplicity=self.multiplicity, required=self.required, literal=self.literal,
                        socket=self.socket, default=self.default)


@dataclass(frozen=True)
class PortType:
    """Annotation marker for a parameter whose type id cannot be read off its Python type."""

    id: str


def tensor_input(id: str = "input", text: str = "Input", help: str = "The tensor to transform.",
                 required: bool = False, multiplicity: Literal["1", "n"] = "1") -> Port:
    return Port(id, "NeuralNetworkTensor", text, help, required=required, multiplicity=multiplicity)


def layer_input(id: str = "layer", text: str = "Layer", help: str = "A layer instance.",
                required: bool = True, multiplicity: Literal["1", "n"] = "1") -> Port:
    return Port(id, "NeuralNetworkLayer", text, help, required=required, multiplicity=multiplicity)


LAYER_OUTPUT = Port(
    "layer", "NeuralNetworkLayer", "Layer instance",
    "The layer object itself, for wrappers or to apply the same weights again elsewhere.",
)
TENSOR_OUTPUT = Port(
    "output", "NeuralNetworkTensor", "Output",
    "The result of applying the layer to the input tensor; present only when the input is wired.",
)


def shorthand_literal(type_id: str):
    return Literal[tuple(BY_TYPE[type_id])]


Initializer = Annotated[shorthand_literal("NeuralNetworkInitializer") | None, PortType("NeuralNetworkInitializer")]
Regularizer = Annotated[shorthand_literal("NeuralNetworkRegularizer") | None, PortType("NeuralNetworkRegularizer")]
Constraint = Annotated[shorthand_literal("NeuralNetworkConstraint") | None, PortType("NeuralNetworkConstraint")]


def param(default: Any = ..., text: str = "", help: str = "", **constraints) -> Any:
    """A literal input: its default, label (`text`), help and JSON Schema bounds."""
    return Field(default, title=text, description=help, **constraints)


class Params(BaseModel):
    """Base of every card's parameter model: unknown keys and non-finite numbers are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class NoParams(Params):
    model_config = ConfigDict(json_schema_extra={"examples": [{}]})


class ParamObject(BaseModel):
    """Base of `Object` parameters: a small JSON object with listed keys."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


_SCALAR_TYPE_IDS = {bool: "Boolean", int: "Integer", float: "Float", str: "String"}


def _type_id(annotation: Any, metadata: list) -> str:
    for marker in metadata:
        if isinstance(marker, PortType):
            return marker.id
    if typing.get_origin(annotation) is Annotated:
        return _type_id(*typing.get_args(annotation)[:1], list(typing.get_args(annotation)[1:]))
    members = [a for a in typing.get_args(annotation) if a is not type(None)] \
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) else [annotation]
    kinds = set()
    for member in members:
        origin = typing.get_origin(member)
        if origin is Annotated:
            kinds.add(_type_id(member, []))
        elif origin is list:
            kinds.add("FloatList" if _type_id(typing.get_args(member)[0], []) == "Float" else "IntegerList")
        elif origin is Literal:
            kinds.add(_SCALAR_TYPE_IDS[type(typing.get_args(member)[0])])
        elif isinstance(member, type) and issubclass(member, BaseModel):
            kinds.add("Object")
        else:
            kinds.add(_SCALAR_TYPE_IDS[member])
    if kinds == {"Integer", "Float"}:
        return "Float"
    if len(kinds) != 1:
        raise TypeError(f"cannot tell the port type of {annotation!r}; annotate it with PortType")
    return kinds.pop()


def _bounds(name: str, info: FieldInfo) -> str | None:
    lower = upper = None
    for bound in info.metadata:
        if isinstance(bound, annotated_types.Ge):
            lower = f"{bound.ge} <= "
        elif isinstance(bound, annotated_types.Gt):
            lower = f"{bound.gt} < "
        elif isinstance(bound, annotated_types.Le):
            upper = f" <= {bound.le}"
        elif isinstance(bound, annotated_types.Lt):
            upper = f" < {bound.lt}"
    if lower is None and upper is None:
        return None
    return f"{lower or ''}{name}{upper or ''}"


class Card:
    """A card declaration. Subclasses set the class attributes; instances are never made."""

    id: ClassVar[str]
    version: ClassVar[int] = 1
    title: ClassVar[str]
    path: ClassVar[tuple[str, ...]]
    help: ClassVar[str]
    keras: ClassVar[str | None] = None
    # Markdown for the card's documentation page only, after its help: what is too long for the
    # catalogue (formulas, comparisons with other libraries). Its headings are level 2 or lower.
    guide: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = NoParams
    sockets: ClassVar[tuple[Port, ...]] = ()
    outputs: ClassVar[tuple[Port, ...]] = ()
    # For initializer sockets: the rank of the weight they initialize (checked against the
    # initializer's own minimum rank at validation).
    weight_ranks: ClassVar[dict[str, int]] = {}
    # For instance-producing cards: the smallest weight rank the instance can serve.
    min_weight_rank: ClassVar[int] = 1
    # Whether the card's `build` makes a Keras layer (reported in a RUN RESULT's `layers`).
    makes_layer: ClassVar[bool] = False
    # Whether the card applies the layer wired to its `layer` socket to its `input` (weight sharing).
    applies_wired_layer: ClassVar[bool] = False
    # Params that Keras keeps as the layer's weights, in the order it saves them, when a model
    # learned them (`adapt`) instead of taking them as arguments: an import reads them there.
    state_params: ClassVar[tuple[str, ...]] = ()
    # Input or output for the cards that mark the model's boundary.
    model_role: ClassVar[ModelRole | None] = None
    # The smallest valid graph of a card (docs, catalogue-wide tests) feeds its tensor sockets
    # from Inputs of this per-sample shape and dtype, and each required layer socket from the
    # `layer` output of a node of the given (card id, params).
    example_input_shape: ClassVar[tuple[int | None, ...]] = (4,)
    example_input_dtype: ClassVar[str] = "float32"
    example_layers: ClassVar[dict[str, tuple[str, dict]]] = {}
    # Whether an inspection also shows the tensor entering the card, its batch statistics and
    # the layer's moving statistics (batch normalization: the point is to compare them).
    inspect_input: ClassVar[bool] = False
    # For a card whose layer only works inside another layer (a recurrent cell): the (card id,
    # layer socket, params) of a card that takes it, for the smallest graph.
    example_consumer: ClassVar[tuple[str, str, dict] | None] = None

    # -- metadata ---------------------------------------------------------------------------

    @classmethod
    @functools.cache  # a card's ports never change; validation asks for them for every node
    def param_ports(cls) -> tuple[Port, ...]:
        ports = []
        for name, info in cls.Params.model_fields.items():
            type_id = _type_id(info.annotation, info.metadata)
            default = None if info.is_required() else info.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                default = default.model_dump()
            ports.append(Port(
                name, type_id, info.title or name, info.description or "",
                required=info.is_required(), literal=True,
                socket=type_id in INSTANCE_TYPES, default=default,
            ))
        return tuple(ports)

    @classmethod
    def inputs(cls) -> list[Port]:
        return [*cls.sockets, *cls.param_ports()]

    @classmethod
    def input_port(cls, port_id: str) -> Port | None:
        return next((p for p in cls.inputs() if p.id == port_id), None)

    @classmethod
    def output_port(cls, port_id: str) -> Port | None:
        return next((p for p in cls.outputs if p.id == port_id), None)

    @classmethod
    def params_schema(cls) -> dict:
        return cls.Params.model_json_schema()

    @classmethod
    def info(cls) -> CardInfo:
        """The CARD object of CONTRACT §3."""
        return CardInfo(id=cls.id, version=cls.version, title=cls.title, path=list(cls.path), help=cls.help,
                        keras=cls.keras, inputs=[p.info() for p in cls.inputs()],
                        outputs=[p.info() for p in cls.outputs], params_schema=cls.params_schema())

    @classmethod
    def as_json(cls) -> dict:
        return cls.info().model_dump(mode="json")

    @classmethod
    def examples(cls) -> list[dict]:
        return (cls.Params.model_config.get("json_schema_extra") or {}).get("examples", [{}])

    # -- validation -------------------------------------------------------------------------

    @classmethod
    def validate_params(cls, node: str, params: dict) -> tuple[Params | None, list[Problem]]:
        try:
            return cls.Params.model_validate(params), []
        except ValidationError as exc:
            return None, [cls._problem(node, params, error) for error in exc.errors()]

    @classmethod
    def _problem(cls, node: str, params: dict, error: dict) -> Problem:
        loc = error["loc"]
        port = str(loc[0]) if loc else None
        received = error.get("input")
        kind = error["type"]
        info = cls.Params.model_fields.get(port) if port else None
        if kind == "extra_forbidden" and len(loc) == 1:
            return Problem(code="unknown_param", node=node, port=port, received=received,
                           message=f"{cls.id} has no parameter {port!r}",
                           expected=sorted(cls.Params.model_fields))
        if kind == "missing" and len(loc) == 1:
            return Problem(code="missing_required_input", node=node, port=port,
                           message=f"{port} is required")
        if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            expected = _bounds(".".join(map(str, loc)), info) if info and len(loc) == 1 else None
            expected = expected or error["msg"].removeprefix("Input should be ")
            return Problem(code="param_out_of_range", node=node, port=port, received=received,
                           expected=expected, message=f"{port} must be {expected}, got {received!r}")
        if kind == "param_out_of_range":
            return Problem(code="param_out_of_range", node=node, port=port, received=received,
                           expected=error["ctx"]["expected"], message=error["msg"])
        if kind == "finite_number" or (isinstance(received, float) and not math.isfinite(received)):
            return Problem(code="param_invalid", node=node, port=port, received=received,
                           expected="a finite number",
                           message=f"{port} must be a finite number, got {received!r}")
        if kind == "literal_error":
            return Problem(code="param_invalid", node=node, port=port, received=received,
                           expected=f"one of {error['ctx']['expected']}",
                           message=f"{port} must be one of {error['ctx']['expected']}, got {received!r}")
        where = ".".join(map(str, loc))
        return Problem(code="param_invalid", node=node, port=port, received=received,
                       message=f"{where}: {error['msg'][0].lower()}{error['msg'][1:]}, got {received!r}")

    @classmethod
    def check(cls, node: str, params: Params, input_shapes: dict[str, Any]) -> list[Problem]:
        """Problems that need the shapes of the wired tensors (called before `build`)."""
        return []

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def resolve_instances(cls, params: Params, sockets: dict[str, Any]) -> dict[str, Any]:
        """Parameter values with shorthand identifiers turned into Keras objects and wired
        sockets taking the place of their parameter."""
        values = {}
        for port in cls.param_ports():
            value = getattr(params, port.id)
            if port.socket and isinstance(value, str):
                value = BY_TYPE[port.type][value].build()
            elif isinstance(value, BaseModel):
                value = value.model_dump()
            values[port.id] = value
        values.update({k: v for k, v in sockets.items() if cls.input_port(k).type in INSTANCE_TYPES})
        return values

    @classmethod
    def build(cls, node: str, params: Params, sockets: dict[str, Any]) -> dict[str, Any]:
        """The values of the card's output ports, given its params and wired sockets."""
        raise NotImplementedError

    # -- importing --------------------------------------------------------------------------

    @classmethod
    def params_from_arguments(cls, arguments: dict[str, Any]) -> dict[str, Any]:
        """The node params that give these Keras constructor arguments (as JSON values, with
        instance ports already turned into shorthand identifiers or None): the reverse of
        `resolve_instances` / `layer_arguments`. Values equal to the port's default are left out;
        arguments without a port are ignored here (the importer checks them). A card whose
        `layer_arguments` reshapes a value overrides this to undo it."""
        params = {}
        for port in cls.param_ports():
            if port.id in arguments:
                value = _as_port_value(port.type, arguments[port.id])
                if port.required or value != port.default:
                    params[port.id] = value
        return params

    # -- hooks of a run: empty unless a card has something to say ------------------------------

    @classmethod
    def check_fit(cls, node: str, params: Params, layer: Any, samples: int, batch_size: int) -> list[Problem]:
        """Problems with fitting this node's layer on `samples` samples in batches of
        `batch_size`, found before training starts."""
        return []

    @classmethod
    def feature_axis(cls, params: Params) -> int | None:
        """The axis whose entries are the card's channels, for per-channel statistics: the first
        after the batch for channels-first data, else the last."""
        return 1 if getattr(params, "data_format", None) == "channels_first" else -1

    @classmethod
    def report(cls, params: Params, layer: Any) -> dict[str, Any]:
        """Facts a RUN RESULT adds to this node's layer report, beside class, config and weights."""
        return {}


def _as_port_value(type_id: str, value: Any) -> Any:
    """A Keras argument in the form a port of `type_id` holds it: lists for tuples, a one-element
    list for an IntegerList given one integer, the integer of a one-element size list."""
    if isinstance(value, tuple):
        value = list(value)
    if type_id == "IntegerList" and isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if type_id == "Integer" and isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


class InstanceCard(Card):
    """A card that makes a Keras initializer, regularizer or constraint from its params."""

    @classmethod
    def build(cls, node, params, sockets):
        instance = keras_attribute(cls.keras)(**cls.resolve_instances(params, sockets))
        return {cls.outputs[0].id: instance}


class LayerCard(Card):
    """A card that makes a Keras layer and applies it to its `input` socket when wired."""

    sockets = (tensor_input(),)
    outputs = (LAYER_OUTPUT, TENSOR_OUTPUT)
    makes_layer = True
    # Parameters that are options of the layer's call rather than of its constructor (Keras
    # call keywords such as `use_causal_mask`): they go to the call, never to the constructor.
    call_options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def layer_arguments(cls, node: str, params: Params, sockets: dict[str, Any]) -> dict[str, Any]:
        arguments = cls.resolve_instances(params, sockets)
        for option in cls.call_options:
            del arguments[option]
        if "name" in arguments and arguments["name"] is None:
            arguments["name"] = node
        return arguments

    @classmethod
    def call_arguments(cls, params: Params, sockets: dict[str, Any]) -> dict[str, Any]:
        """The keywords of the layer's call besides the tensor it is called on (`input`, or the
        list wired to `inputs`): its call options and its other wired tensor sockets."""
        tensor_ports = [p.id for p in cls.sockets
                        if p.type == "NeuralNetworkTensor" and p.id not in ("input", "inputs")]
        return {**{option: getattr(params, option) for option in cls.call_options},
                **{port: sockets[port] for port in tensor_ports if port in sockets}}

    @classmethod
    def make_layer(cls, node: str, params: Params, sockets: dict[str, Any]):
        return keras_attribute(cls.keras)(**cls.layer_arguments(node, params, sockets))

    @classmethod
    def build(cls, node, params, sockets):
        layer = cls.make_layer(node, params, sockets)
        outputs = {"layer": layer}
        if "input" in sockets:
            outputs["output"] = layer(sockets["input"], **cls.call_arguments(params, sockets))
        return outputs


def shorthand_of(type_id: str, identifier: str) -> Shorthand:
    return BY_TYPE[type_id][identifier]


def layer_name(card: type[Card], node: str, params: Params | None) -> str:
    return getattr(params, "name", None) or node
