"""Regularizer cards: penalties on a weight added to the training loss."""

from typing import Literal

from pydantic import ConfigDict

from nncards.card import InstanceCard, Params, Port, param

OUTPUT = (Port("regularizer", "NeuralNetworkRegularizer", "Regularizer",
               "The regularizer, to wire into a layer's regularizer socket."),)


class RegularizerCard(InstanceCard):
    path = ("Regularizers",)
    outputs = OUTPUT


def factor(name: str, default: float, norm: str):
    return param(default, text=f"{name.upper()} factor", ge=0,
                 help=f"Weight of the {norm} in the loss.")


class L1(RegularizerCard):
    id = "regularizer_l1"
    title = "L1 regularizer"
    keras = "keras.regularizers.L1"
    help = "Adds `l1 * sum(|w|)` to the loss, pushing weights towards exact zeros."

    class Params(Params):
        model_config = ConfigDict(json_schema_extra={"examples": [{"l1": 0.01}]})
        l1: float = factor("l1", 0.01, "sum of absolute values")


class L2(RegularizerCard):
    id = "regularizer_l2"
    title = "L2 regularizer"
    keras = "keras.regularizers.L2"
    help = "Adds `l2 * sum(w²)` to the loss, keeping weights small (weight decay)."

    class Params(Params):
        model_config = ConfigDict(json_schema_extra={"examples": [{"l2": 0.01}]})
        l2: float = factor("l2", 0.01, "sum of squares")


class L1L2(RegularizerCard):
    id = "regularizer_l1_l2"
    title = "L1 + L2 regularizer"
    keras = "keras.regularizers.L1L2"
    help = "Adds both penalties: `l1 * sum(|w|) + l2 * sum(w²)`."

    class Params(Params):
        model_config = ConfigDict(json_schema_extra={"examples": [{"l1": 0.01, "l2": 0.01}]})
        l1: float = factor("l1", 0.0, "sum of absolute values")
        l2: float = factor("l2", 0.0, "sum of squares")


class Orthogonal(RegularizerCard):
    id = "regularizer_orthogonal"
    title = "Orthogonal regularizer"
    keras = "keras.regularizers.OrthogonalRegularizer"
    help = ("Encourages the rows (or columns) of a 2-D weight to be orthogonal to each other, by "
            "penalizing the mean absolute value of their pairwise dot products once normalized.")

    class Params(Params):
        model_config = ConfigDict(json_schema_extra={"examples": [{"factor": 0.01, "mode": "rows"}]})
        factor: float = param(0.01, text="Factor", ge=0, help="Weight of the penalty in the loss.")
        mode: Literal["rows", "columns"] = param(
            "rows", text="Mode", help="Whether the rows or the columns of the weight should be orthogonal.")


CARDS = [L1, L2, L1L2, Orthogonal]
