"""The graph's boundary: Input cards become the model's inputs, Output cards its outputs."""

from typing import ClassVar, Literal

from pydantic import ConfigDict, field_validator

from nncards.card import Card, ModelRole, Params, Port, param, tensor_input
from nncards.keras_objects import keras_attribute


class InputParams(Params):
    model_config = ConfigDict(json_schema_extra={"examples": [{"shape": [4]}]})

    shape: list[int | None] = param(
        text="Shape",
        help="Shape of one sample, without the batch dimension. Use `null` for a dimension "
        "that varies from batch to batch, such as the length of a sequence.",
        min_length=1, max_length=8,
    )
    dtype: Literal["float32", "float16", "float64", "int32", "int64", "bool"] = param(
        "float32", text="Data type", help="Element type of the tensor fed to this input."
    )
    name: str | None = param(
        None, text="Name", help="Name of the model input; the node id when left empty.",
        min_length=1, max_length=64,
    )

    @field_validator("shape")
    @classmethod
    def _positive_dims(cls, shape):
        if any(d is not None and d < 1 for d in shape):
            raise ValueError("every dimension must be at least 1 or null")
        return shape


class InputCard(Card):
    id = "input"
    title = "Input"
    path = ("Graph",)
    help = (
        "Where data enters the network. Each Input card becomes one input of the Keras model, "
        "fed by the arrays keyed by this node's id in a run's `inputs`."
    )
    keras = "keras.Input"
    Params = InputParams
    outputs = (Port("output", "NeuralNetworkTensor", "Output", "The symbolic tensor of this input, batch dimension first."),)
    model_role = ModelRole.INPUT

    @classmethod
    def build(cls, node, params, sockets):
        tensor = keras_attribute(cls.keras)(shape=tuple(params.shape), dtype=params.dtype, name=params.name or node)
        return {"output": tensor}


class OutputCard(Card):
    id = "output"
    title = "Output"
    path = ("Graph",)
    help = (
        "Where results leave the network. The tensor wired here becomes one output of the Keras "
        "model, reported and trained against under this node's id."
    )
    sockets = (tensor_input(help="The tensor to expose as a model output.", required=True),)
    model_role = ModelRole.OUTPUT

    @classmethod
    def build(cls, node, params, sockets):
        return {}


CARDS = [InputCard, OutputCard]
