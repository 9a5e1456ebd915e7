"""The data types that flow through card ports (CONTRACT §2)."""

from dataclasses import dataclass
from enum import StrEnum


class TypeId(StrEnum):
    """Every type a port can have (CONTRACT §2)."""

    INTEGER = "Integer"
    FLOAT = "Float"
    BOOLEAN = "Boolean"
    STRING = "String"
    INTEGER_LIST = "IntegerList"
    FLOAT_LIST = "FloatList"
    OBJECT = "Object"
    TENSOR = "NeuralNetworkTensor"
    LAYER = "NeuralNetworkLayer"
    INITIALIZER = "NeuralNetworkInitializer"
    REGULARIZER = "NeuralNetworkRegularizer"
    CONSTRAINT = "NeuralNetworkConstraint"


@dataclass(frozen=True)
class DataType:
    id: TypeId
    help: str
    literal: bool
    socket: bool
    color: str


TYPES: dict[str, DataType] = {
    t.id: t
    for t in (
        DataType(
            TypeId("Integer"),
            "A whole number typed on the card, such as an axis index or a count of units.",
            literal=True, socket=False, color="#4f86c6",
        ),
        DataType(
            TypeId("Float"),
            "A real number typed on the card, such as a momentum or an epsilon. "
            "Non-finite values are refused.",
            literal=True, socket=False, color="#2a9d8f",
        ),
        DataType(
            TypeId("Boolean"),
            "A true/false switch typed on the card.",
            literal=True, socket=False, color="#e9c46a",
        ),
        DataType(
            TypeId("String"),
            "A short text typed on the card, such as a layer name or a dtype.",
            literal=True, socket=False, color="#8d99ae",
        ),
        DataType(
            TypeId("IntegerList"),
            "A list of whole numbers, used for shapes and axes; `null` stands for a dimension "
            "that is not known in advance.",
            literal=True, socket=False, color="#6a4c93",
        ),
        DataType(
            TypeId("FloatList"),
            "A list of real numbers, such as per-feature means and variances or bin boundaries. "
            "Non-finite values are refused.",
            literal=True, socket=False, color="#52b69a",
        ),
        DataType(
            TypeId("Object"),
            "A small JSON object whose allowed keys the port lists, for grouped settings such "
            "as renormalization clipping bounds.",
            literal=True, socket=False, color="#b5838d",
        ),
        DataType(
            TypeId("NeuralNetworkTensor"),
            "A symbolic tensor flowing between layers. Its shape is inferred when the graph is "
            "validated; the first dimension is the batch.",
            literal=False, socket=True, color="#e76f51",
        ),
        DataType(
            TypeId("NeuralNetworkLayer"),
            "A layer object itself rather than its result, for wrappers and for applying the "
            "same weights to several tensors.",
            literal=False, socket=True, color="#f4a261",
        ),
        DataType(
            TypeId("NeuralNetworkInitializer"),
            "The rule that gives a weight its starting values. Wire an initializer card, or "
            "type one of the short identifiers listed on the port.",
            literal=True, socket=True, color="#43aa8b",
        ),
        DataType(
            TypeId("NeuralNetworkRegularizer"),
            "A penalty on a weight that is added to the training loss. Wire a regularizer "
            "card, or type one of the short identifiers listed on the port.",
            literal=True, socket=True, color="#577590",
        ),
        DataType(
            TypeId("NeuralNetworkConstraint"),
            "A projection applied to a weight after every optimizer update. Wire a constraint "
            "card, or type one of the short identifiers listed on the port.",
            literal=True, socket=True, color="#90be6d",
        ),
    )
}

# Instance types: a socket brings a ready object, or params name one of these shorthands.
INSTANCE_TYPES = (TypeId.INITIALIZER, TypeId.REGULARIZER, TypeId.CONSTRAINT)
