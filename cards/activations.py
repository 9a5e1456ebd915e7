"""Activation layers with settings of their own: ReLU, LeakyReLU and Softmax cards."""

from nncards.card import param

from nncards.card import LAYER, KerasLayerCard, arguments


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


CARDS = [ReLU, LeakyReLU, Softmax]
