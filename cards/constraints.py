"""Constraint cards: projections applied to a weight after every optimizer update."""

from pydantic import ConfigDict

from nncards.card import InstanceCard, Params, Port, param

OUTPUT = (Port("constraint", "NeuralNetworkConstraint", "Constraint",
               "The constraint, to wire into a layer's constraint socket."),)


def axis_param():
    return param(0, text="Axis",
                 help="Axis along which norms are taken. For a 1-D weight such as gamma use 0, "
                 "the whole vector.")


class ConstraintCard(InstanceCard):
    path = ("Constraints",)
    outputs = OUTPUT


class MaxNorm(ConstraintCard):
    id = "constraint_MaxNorm"
    title = "Max norm constraint"
    keras = "keras.constraints.MaxNorm"
    help = "Rescales the weight whenever its norm along `axis` exceeds a maximum."

    class Params(Params):
        model_config = ConfigDict(json_schema_extra={"examples": [{"max_value": 2.0, "axis": 0}]})
        max_value: float = param(2.0, text="Maximum norm", ge=0, help="The largest norm allowed.")
        axis: int = axis_param()


class MinMaxNorm(ConstraintCard):
    id = "constraint_MinMaxNorm"
    title = "Min/max norm constraint"
    keras = "keras.constraints.MinMaxNorm"
    help = "Moves the norm of the weight along `axis` into a range, fully or partly (`rate`)."

    class Params(Params):
        model_config = ConfigDict(json_schema_extra={"examples": [{"min_value": 0.5, "max_value": 1.0}]})
        min_value: float = param(0.0, text="Minimum norm", ge=0, help="The smallest norm allowed.")
        max_value: float = param(1.0, text="Maximum norm", ge=0, help="The largest norm allowed.")
        rate: float = param(1.0, text="Rate", ge=0, le=1,
                            help="How far to move into the range at each update: 1 goes all the way.")
        axis: int = axis_param()


class NonNeg(ConstraintCard):
    id = "constraint_NonNeg"
    title = "Non-negative constraint"
    keras = "keras.constraints.NonNeg"
    help = "Sets negative elements of the weight to zero."


class UnitNorm(ConstraintCard):
    id = "constraint_UnitNorm"
    title = "Unit norm constraint"
    keras = "keras.constraints.UnitNorm"
    help = "Rescales the weight to a norm of exactly 1 along `axis`."

    class Params(Params):
        model_config = ConfigDict(json_schema_extra={"examples": [{"axis": 0}]})
        axis: int = axis_param()


CARDS = [MaxNorm, MinMaxNorm, NonNeg, UnitNorm]
