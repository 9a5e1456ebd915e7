"""Operation cards: functions that are not layers."""

from pydantic import ConfigDict

from nncards.card import Card, Params, Port, param, tensor_input
from nncards.keras_objects import keras_attribute
from nncards.contract.errors import Problem


class NormalizeBatchInTrainingParams(Params):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reduction_axes": [0]}]})

    reduction_axes: list[int] = param(
        text="Reduction axes", min_length=1,
        help="The axes the mean and variance are taken over, counted from 0 = the batch axis. "
        "`[0, 1, 2]` on a 4-D channels-last input gives one mean and variance per channel.",
    )
    epsilon: float = param(
        0.001, text="Epsilon", gt=0, help="Added to the variance before its square root.",
    )


def _stats_port(id: str, text: str, what: str) -> Port:
    return Port(id, "NeuralNetworkTensor", text,
                f"The batch {what}, shaped like the axes that were not reduced: no batch axis when "
                "axis 0 is reduced. It describes the batch the graph was called on, so it is "
                "meaningful in `call` steps; `predict` concatenates it batch by batch.")


class NormalizeBatchInTraining(Card):
    id = "op_normalize_batch_in_training"
    title = "Normalize batch in training"
    path = ("Operations", "Normalization")
    keras = "nncards.ops.normalize_batch_in_training"
    help = (
        "Keras 2's `backend.normalize_batch_in_training`: normalizes the input with the mean and "
        "variance of the current batch over `reduction_axes` (no scale, no offset, no moving "
        "statistics) and also returns those statistics. It always uses the current batch, in "
        "training and at inference alike.\n\n"
        "The normalization uses the biased variance (divide by N). The returned `variance` follows "
        "Keras 2's choice of computation: on a 4-D input reduced over exactly `[0, 1, 2]` (or "
        "`[0, 2, 3]` where a GPU is visible) the fused kernel runs and the returned variance is the "
        "unbiased one (divide by N − 1; 0 when N = 1); everywhere else it is the biased one. "
        "Inputs are computed in float32."
    )
    Params = NormalizeBatchInTrainingParams
    sockets = (tensor_input(help="The tensor to normalize.", required=True),)
    outputs = (
        Port("output", "NeuralNetworkTensor", "Output", "The normalized tensor, shaped like the input."),
        _stats_port("mean", "Mean", "mean"),
        _stats_port("variance", "Variance", "variance (see the help for biased or unbiased)"),
    )

    @classmethod
    def check(cls, node, params, input_shapes):
        shape = input_shapes.get("input")
        axes = params.reduction_axes
        if len(set(axes)) != len(axes):
            return [Problem(code="param_invalid", node=node, port="reduction_axes", received=axes,
                            expected="distinct axes", message=f"reduction_axes repeats an axis: {axes}")]
        if shape is not None and any(not 0 <= a < len(shape) for a in axes):
            return [Problem(code="param_out_of_range", node=node, port="reduction_axes", received=axes,
                            expected=f"axes between 0 and {len(shape) - 1}",
                            message=f"reduction_axes must lie between 0 and {len(shape) - 1} for an input "
                            f"of rank {len(shape)} (shape {shape}), got {axes}")]
        return []

    @classmethod
    def build(cls, node, params, sockets):
        layer = keras_attribute("nncards.layers.normalize_batch.NormalizeBatchInTraining")(
            reduction_axes=params.reduction_axes, epsilon=params.epsilon, name=node)
        output, mean, variance = layer(sockets["input"])
        return {"output": output, "mean": mean, "variance": variance}


CARDS = [NormalizeBatchInTraining]
