"""What the Keras layer cards share: argument groups and a base that names a card after its class.

A layer card declares only what is its own. Argument groups that recur across Keras layers (an
initializer/regularizer/constraint triple per weight, the activation, padding, data format,
the layer's name and dtype, ...) are written once here, and `arguments` assembles a card's
parameter model from its own fields and these groups, in the order they are listed.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from nncards.card.base import Constraint, Initializer, LayerCard, Params, Regularizer, param

Argument = tuple[Any, Any]  # (annotation, FieldInfo), as a field of a Pydantic model

ACTIVATIONS = Literal[
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "glu", "silu", "swish",
    "hard_silu", "hard_swish", "mish", "sigmoid", "hard_sigmoid", "log_sigmoid", "sparse_sigmoid",
    "tanh", "hard_tanh", "tanh_shrink", "hard_shrink", "soft_shrink", "softplus", "softsign",
    "sparse_plus", "squareplus", "exponential", "softmax", "log_softmax", "sparsemax",
]
DTYPES = Literal["float32", "float16", "bfloat16", "float64", "mixed_float16", "mixed_bfloat16"]
DATA_FORMATS = Literal["channels_last", "channels_first"]

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]


def arguments(model_name: str, examples: list[dict], validators: dict | None = None, /,
              **fields: Argument) -> type[Params]:
    """A card's parameter model with `fields` in the order given and `examples` for its schema;
    `validators` are Pydantic validators (e.g. `model_validator(...)(function)`) by name."""
    namespace = {
        "__module__": __name__,
        "__annotations__": {field: annotation for field, (annotation, _) in fields.items()},
        "model_config": ConfigDict(json_schema_extra={"examples": examples}),
        **{field: info for field, (_, info) in fields.items()},
        **(validators or {}),
    }
    return type(model_name, (Params,), namespace)


def weights(prefix: str, initializer: str | None, what: str) -> dict[str, Argument]:
    """The initializer, regularizer and constraint of one weight (`what` names it in the help)."""
    label = prefix.replace("_", " ").capitalize()
    return {
        f"{prefix}_initializer": (Initializer, param(
            initializer, text=f"{label} initializer", help=f"Starting values of {what}.")),
        f"{prefix}_regularizer": (Regularizer, param(
            None, text=f"{label} regularizer", help=f"Penalty on {what}, added to the loss.")),
        f"{prefix}_constraint": (Constraint, param(
            None, text=f"{label} constraint", help=f"Projection applied to {what} after each update.")),
    }


def activation(field: str = "activation", default: str | None = None, what: str = "the result") -> dict[str, Argument]:
    annotation = ACTIVATIONS if default else ACTIVATIONS | None
    text = field.replace("_", " ").capitalize()
    return {field: (annotation, param(default, text=text, help=(
        f"Function applied to {what}; "
        + (f"`{default}` unless changed." if default else "none (linear) when left empty.")
    )))}


def flag(field: str, default: bool, text: str, help: str) -> dict[str, Argument]:
    return {field: (bool, param(default, text=text, help=help))}


def fraction(field: str, text: str, help: str, default: float = 0.0) -> dict[str, Argument]:
    return {field: (float, param(default, text=text, help=help, ge=0, le=1))}


def sizes(field: str, dims: int, default: Any, text: str, help: str, minimum: int = 1,
          optional: bool = False) -> dict[str, Argument]:
    """A size per spatial dimension: one integer in 1-D, a list of `dims` integers otherwise."""
    item = Annotated[int, Field(ge=minimum)]
    annotation = item if dims == 1 else list[item]
    if optional:
        annotation = annotation | None
    bounds = {} if dims == 1 else {"min_length": dims, "max_length": dims}
    return {field: (annotation, param(default, text=text, help=help, **bounds))}


def padding(*modes: str) -> dict[str, Argument]:
    extra = " `causal` pads only at the start, so no output sees a later step." if "causal" in modes else ""
    return {"padding": (Literal[("valid", "same", *modes)], param(
        "valid", text="Padding",
        help="`valid`: no padding, the output shrinks by the window; `same`: zeros are added so "
        "that with stride 1 the output keeps the input's size." + extra))}


DATA_FORMAT: dict[str, Argument] = {"data_format": (DATA_FORMATS, param(
    "channels_last", text="Data format",
    help="Where the channels are: last (`batch, ..., channels`, the usual layout) or first "
    "(`batch, channels, ...`)."))}

USE_BIAS = flag("use_bias", True, "Use bias", "Add a learned offset per output feature.")

ACTIVITY: dict[str, Argument] = {"activity_regularizer": (Regularizer, param(
    None, text="Activity regularizer", help="Penalty on the layer's output, added to the loss."))}

SEED: dict[str, Argument] = {"seed": (int | None, param(
    None, text="Seed", ge=0,
    help="Seed of the layer's random draws; empty: derived from the run's seed."))}

LORA: dict[str, Argument] = {
    "lora_rank": (int | None, param(
        None, text="LoRA rank", ge=1,
        help="When set, the main weight is frozen and a trainable low-rank update of this rank is "
        "learned instead (LoRA fine-tuning).")),
    "lora_alpha": (float | None, param(
        None, text="LoRA alpha", gt=0,
        help="Scale of the low-rank update, divided by the rank; empty: the rank itself.")),
}

NAMING: dict[str, Argument] = {
    "name": (str | None, param(
        None, text="Name", help="Name of the Keras layer; the node id when left empty.",
        min_length=1, max_length=64)),
    "dtype": (DTYPES, param(
        "float32", text="Data type",
        help="Computation and variable type. The mixed policies compute in 16 bits and keep the "
        "variables in float32.")),
}

LAYER: dict[str, Argument] = {
    "trainable": (bool, param(
        True, text="Trainable", help="Off: the layer's weights are frozen and not updated by fit.")),
    **NAMING,
}


class KerasLayerCard(LayerCard):
    """A card for the Keras layer of the same class name: `id` and `keras` follow from the name."""

    id_prefix: ClassVar[str] = "layer_"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "id" not in cls.__dict__:
            cls.id = f"{cls.id_prefix}{cls.__name__}"
        if "keras" not in cls.__dict__:
            cls.keras = f"keras.layers.{cls.__name__}"

    @classmethod
    def params_from_arguments(cls, arguments):
        params = super().params_from_arguments(arguments)
        # Keras writes an empty activation as "linear"; an empty default means the same.
        return {port: value for port, value in params.items()
                if not (value == "linear" and cls.input_port(port).default is None and not cls.input_port(port).required)}
