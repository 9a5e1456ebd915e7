"""The card toolkit: what built-in cards and third-party packs alike declare cards with.

`base` holds the card model (ports, parameters, the `Card`, `LayerCard` and `InstanceCard`
classes); `fields` the argument groups that recur across Keras layers and `KerasLayerCard`,
which names a card after its Keras class. Everything a card author needs is importable from here.
"""

from nncards.card.base import (LAYER_OUTPUT, TENSOR_OUTPUT, Card, Constraint, Initializer, InstanceCard,
                               LayerCard, ModelRole, NoParams, ParamObject, Params, Port, PortType, Regularizer,
                               layer_input, layer_name, param, shorthand_literal, shorthand_of,
                               tensor_input)
from nncards.card.fields import (ACTIVATIONS, ACTIVITY, DATA_FORMAT, DATA_FORMATS, DTYPES, LAYER, LORA,
                                 NAMING, SEED, USE_BIAS, Argument, KerasLayerCard, NonNegativeInt,
                                 PositiveInt, activation, arguments, flag, fraction, padding, sizes,
                                 weights)

__all__ = [
    "LAYER_OUTPUT", "TENSOR_OUTPUT", "Card", "Constraint", "Initializer", "InstanceCard", "LayerCard",
    "ModelRole", "NoParams", "ParamObject", "Params", "Port", "PortType", "Regularizer", "layer_input", "layer_name",
    "param", "shorthand_literal", "shorthand_of", "tensor_input",
    "ACTIVATIONS", "ACTIVITY", "DATA_FORMAT", "DATA_FORMATS", "DTYPES", "LAYER", "LORA", "NAMING", "SEED",
    "USE_BIAS", "Argument", "KerasLayerCard", "NonNegativeInt", "PositiveInt", "activation", "arguments",
    "flag", "fraction", "padding", "sizes", "weights",
]
