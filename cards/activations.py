"""Activation layers with settings of their own: ReLU, LeakyReLU, PReLU, ELU and Softmax cards."""

from typing import Annotated

from pydantic import Field

from nncards.card import LAYER, KerasLayerCard, arguments, param, weights


class ActivationCard(KerasLayerCard):
    path = ("Layers", "Activations")


def negative_slope(default: float):
    return {"negative_slope": (float, param(
        default, text="Negative slope", ge=0, help="Factor applied to inputs below the threshold."))}


class ReLU(ActivationCard):
    title = "ReLU layer"
    help = (
        "Rectified linear unit with options: inputs at or above `threshold` pass unchanged (up to "
        "`max_value`), inputs below it are multiplied by `negative_slope` (zero by default)."
    )
    Params = arguments(
        "ReLUParams", [{}, {"max_value": 6.0}, {"negative_slope": 0.1, "threshold": 0.5}],
        max_value=(float | None, param(None, text="Max value", ge=0, help="Upper bound of the output; empty: no bound.")),
        **negative_slope(0.0),
        threshold=(float, param(0.0, text="Threshold", ge=0, help="Inputs below this value are damped or zeroed.")),
        **LAYER,
    )


class LeakyReLU(ActivationCard):
    title = "Leaky ReLU layer"
    help = "Keeps positive inputs and multiplies negative ones by a small `negative_slope`, so they still pass a gradient."
    Params = arguments("LeakyReLUParams", [{}, {"negative_slope": 0.1}], **negative_slope(0.3), **LAYER)


class Softmax(ActivationCard):
    title = "Softmax layer"
    help = "Turns scores into probabilities along one axis: exponentiates them and divides by their sum."
    Params = arguments(
        "SoftmaxParams", [{}, {"axis": 1}],
        axis=(int, param(-1, text="Axis", help="The axis whose entries sum to one; -1 is the last.")),
        **LAYER,
    )


class PReLU(ActivationCard):
    title = "Parametric ReLU layer"
    help = (
        "A leaky ReLU whose slope for negative inputs is learned: one slope per input value, or "
        "shared along the axes listed in `shared_axes` (e.g. one slope per channel of an image)."
    )
    Params = arguments(
        "PReLUParams", [{}, {"alpha_initializer": "constant", "shared_axes": [1]}],
        **weights("alpha", "zeros", "the negative slopes"),
        shared_axes=(list[Annotated[int, Field(ge=1)]] | None, param(
            None, text="Shared axes", min_length=1,
            help="Axes along which one slope is shared, counted from 1 (after the batch axis); `[1, 2]` "
            "on `(batch, rows, columns, channels)` learns one slope per channel. Empty: no sharing.")),
        **LAYER,
    )
    weight_ranks = {"alpha_initializer": 1}


class ELU(ActivationCard):
    title = "ELU layer"
    help = (
        "Exponential linear unit: keeps positive inputs and maps negative ones to "
        "`alpha * (exp(x) - 1)`, a smooth curve that levels off at `-alpha`."
    )
    Params = arguments(
        "ELUParams", [{}, {"alpha": 0.5}],
        alpha=(float, param(1.0, text="Alpha", ge=0, help="The value negative inputs approach.")),
        **LAYER,
    )


CARDS = [ReLU, LeakyReLU, PReLU, ELU, Softmax]
