"""Wrapper layers: cards that take another layer through a `Layer instance` socket."""

from typing import Literal

from nncards.card import LAYER_OUTPUT, TENSOR_OUTPUT, Port, param, layer_input, tensor_input
from nncards.keras_objects import keras_attribute
from nncards.contract.errors import NncardsError, Problem

from nncards.card import LAYER, KerasLayerCard, arguments


class WrapperCard(KerasLayerCard):
    """A layer card whose Keras layer takes the layers wired to its layer sockets as arguments."""

    path = ("Layers", "Wrappers")
    example_input_shape = (3, 4)

    @classmethod
    def layer_arguments(cls, node, params, sockets):
        arguments = super().layer_arguments(node, params, sockets)
        arguments.update({p.id: sockets[p.id] for p in cls.sockets
                          if p.type == "NeuralNetworkLayer" and p.id in sockets})
        return arguments


class TimeDistributed(WrapperCard):
    title = "Time-distributed wrapper"
    help = (
        "Applies a layer to every step of a sequence independently: a `(batch, steps, ...)` input "
        "becomes `(batch, steps, ...)` with the wrapped layer's output at each step, all steps "
        "sharing the wrapped layer's weights. The wrapped layer itself is used, so if it is also "
        "applied elsewhere, the weights are shared with that use too."
    )
    Params = arguments("TimeDistributedParams", [{}], **LAYER)
    sockets = (
        layer_input(help="The layer to apply at each step, from the `layer` output of its card."),
        tensor_input(help="A batch of sequences, `(batch, steps, ...)`; the wrapped layer sees `(batch, ...)`."),
    )
    example_layers = {"layer": ("layer_Dense", {"units": 2})}


def _recurrent_problem(node: str, port: str, layer) -> Problem | None:
    if not isinstance(layer, keras_attribute("keras.layers.RNN")):
        return Problem(code="param_invalid", node=node, port=port, received=type(layer).__name__,
                       expected="a recurrent layer (SimpleRNN, LSTM, GRU, RNN or ConvLSTM)",
                       message=f"{port} must be a recurrent layer (SimpleRNN, LSTM, GRU, RNN or ConvLSTM), got {type(layer).__name__}")
    if layer.return_state:
        return Problem(code="param_invalid", node=node, port=port, received=True,
                       expected="return_state off",
                       message=f"the layer wired to {port} returns its states; turn return_state off inside Bidirectional")
    return None


class Bidirectional(WrapperCard):
    title = "Bidirectional wrapper"
    help = (
        "Runs a recurrent layer over the sequence in both directions and merges the two results, "
        "so every step sees what comes before and after it. The card makes two fresh copies of the "
        "wrapped layer from its settings (forward and backward); their weights are not shared "
        "with the wrapped card's own layer. Weights appear as `forward_<name>/...` and "
        "`backward_<name>/...`."
    )
    Params = arguments(
        "BidirectionalParams", [{}, {"merge_mode": "sum"}, {"merge_mode": None}],
        merge_mode=(Literal["concat", "sum", "mul", "ave"] | None, param(
            "concat", text="Merge mode",
            help="How the two directions are combined: joined along the features (`concat`), added, "
            "multiplied or averaged. Empty: not combined, the backward result goes to its own output.")),
        **LAYER,
    )
    sockets = (
        layer_input(help="The recurrent layer (SimpleRNN, LSTM, GRU, RNN or ConvLSTM) to run in both directions."),
        layer_input("backward_layer", "Backward layer",
                    "Optional recurrent layer for the backward direction, with `go_backwards` on; "
                    "default: a copy of `layer` reading backwards.", required=False),
        tensor_input(help="A batch of sequences, `(batch, steps, features)`."),
        tensor_input("mask", "Mask", "Optional boolean `(batch, steps)`: steps where it is false are skipped."),
    )
    outputs = (LAYER_OUTPUT, TENSOR_OUTPUT, Port(
        "backward_output", "NeuralNetworkTensor", "Backward output",
        "The backward direction's result; present when `merge_mode` is empty (`output` then holds the forward one)."))
    example_layers = {"layer": ("layer_LSTM", {"units": 2})}

    @classmethod
    def make_layer(cls, node, params, sockets):
        problems = [problem for port in ("layer", "backward_layer") if port in sockets
                    for problem in [_recurrent_problem(node, port, sockets[port])] if problem]
        if not problems:
            try:
                return super().make_layer(node, params, sockets)
            except ValueError as exc:  # e.g. a backward layer that does not mirror the forward one
                port = "backward_layer" if "backward_layer" in sockets else "layer"
                problems = [Problem(code="param_invalid", node=node, port=port, message=str(exc))]
        raise NncardsError("graph_invalid", problems[0].message, problems)

    @classmethod
    def build(cls, node, params, sockets):
        outputs = super().build(node, params, sockets)
        if params.merge_mode is None and "output" in outputs:
            outputs["output"], outputs["backward_output"] = outputs["output"]
        return outputs


class SpectralNormalization(WrapperCard):
    title = "Spectral normalization wrapper"
    path = ("Layers", "Normalization")
    help = (
        "Applies a layer with its kernel divided by the kernel's largest singular value (its "
        "spectral norm), estimated by power iteration and refined at every training step. Keeps the "
        "layer from stretching any input by more than a factor of one, which steadies the training "
        "of GAN discriminators. The wrapped layer (a Dense or a convolution: anything with a "
        "`kernel`) is used itself."
    )
    Params = arguments(
        "SpectralNormalizationParams", [{}, {"power_iterations": 3}],
        power_iterations=(int, param(
            1, text="Power iterations", ge=1,
            help="Power-iteration steps per training step that refine the singular value estimate.")),
        **LAYER,
    )
    sockets = (
        layer_input(help="The layer whose kernel is normalized, from the `layer` output of its card."),
        tensor_input(help="The tensor the wrapped layer is applied to."),
    )
    example_layers = {"layer": ("layer_Dense", {"units": 2})}
    example_input_shape = (4,)


CARDS = [TimeDistributed, Bidirectional, SpectralNormalization]
