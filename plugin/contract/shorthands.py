"""nncards' own table of shorthand identifiers for initializer, regularizer and constraint ports.

A port of one of these types may be typed instead of wired: the identifier stands for the
Keras class with the arguments listed here. Nothing outside these tables is accepted.
"""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Shorthand:
    keras_class: str
    arguments: dict[str, Any] = field(default_factory=dict)
    min_rank: int = 1  # the smallest weight rank the object can serve

    def build(self):
        from nncards.keras_objects import keras_attribute

        return keras_attribute(self.keras_class)(**self.arguments)


INITIALIZERS: dict[str, Shorthand] = {
    "zeros": Shorthand("keras.initializers.Zeros"),
    "ones": Shorthand("keras.initializers.Ones"),
    "constant": Shorthand("keras.initializers.Constant", {"value": 0.0}),
    "glorot_uniform": Shorthand("keras.initializers.GlorotUniform"),
    "glorot_normal": Shorthand("keras.initializers.GlorotNormal"),
    "he_uniform": Shorthand("keras.initializers.HeUniform"),
    "he_normal": Shorthand("keras.initializers.HeNormal"),
    "lecun_uniform": Shorthand("keras.initializers.LecunUniform"),
    "lecun_normal": Shorthand("keras.initializers.LecunNormal"),
    "random_normal": Shorthand("keras.initializers.RandomNormal", {"mean": 0.0, "stddev": 0.05}),
    "random_uniform": Shorthand("keras.initializers.RandomUniform", {"minval": -0.05, "maxval": 0.05}),
    "truncated_normal": Shorthand("keras.initializers.TruncatedNormal", {"mean": 0.0, "stddev": 0.05}),
    "variance_scaling": Shorthand("keras.initializers.VarianceScaling"),
    "orthogonal": Shorthand("keras.initializers.Orthogonal", min_rank=2),
    "identity": Shorthand("keras.initializers.Identity", min_rank=2),
}

REGULARIZERS: dict[str, Shorthand] = {
    "l1": Shorthand("keras.regularizers.L1", {"l1": 0.01}),
    "l2": Shorthand("keras.regularizers.L2", {"l2": 0.01}),
    "l1_l2": Shorthand("keras.regularizers.L1L2", {"l1": 0.01, "l2": 0.01}),
}

CONSTRAINTS: dict[str, Shorthand] = {
    "max_norm": Shorthand("keras.constraints.MaxNorm", {"max_value": 2.0, "axis": 0}),
    "min_max_norm": Shorthand(
        "keras.constraints.MinMaxNorm", {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}
    ),
    "non_neg": Shorthand("keras.constraints.NonNeg"),
    "unit_norm": Shorthand("keras.constraints.UnitNorm", {"axis": 0}),
}

BY_TYPE: dict[str, dict[str, Shorthand]] = {
    "NeuralNetworkInitializer": INITIALIZERS,
    "NeuralNetworkRegularizer": REGULARIZERS,
    "NeuralNetworkConstraint": CONSTRAINTS,
}
