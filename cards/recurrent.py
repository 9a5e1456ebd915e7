"""Recurrent layers: SimpleRNN, LSTM and GRU; their cells with the RNN card that runs a cell;
convolutional LSTMs of every rank.

Keras' `stateful` option is left out: it needs a batch size fixed in the model, and an Input
card describes one sample, never the batch.
"""

from typing import Literal

from nncards.card import (ACTIVITY, LAYER, LAYER_OUTPUT, SEED, TENSOR_OUTPUT, USE_BIAS, KerasLayerCard, Port,
                          activation, arguments, flag, fraction, layer_input, param, tensor_input, weights)
from nncards.cards.convolution import FILTERS, window
from nncards.keras_objects import keras_attribute
from nncards.cards.spatial import RANKS, ranked

CUDNN_CHOICES = {"auto": "auto", "always": True, "never": False}
STATE_H = Port("state_h", "NeuralNetworkTensor", "Final state",
               "The hidden state after the last step, `(batch, units)`; present when `return_state` is on.")
STATE_C = Port("state_c", "NeuralNetworkTensor", "Final cell state",
               "The LSTM's cell state after the last step, `(batch, units)`; present when `return_state` is on.")


RECURRENT_WEIGHTS = {
    **weights("kernel", "glorot_uniform", "the input kernel, from the input to the gates"),
    **weights("recurrent", "orthogonal", "the recurrent kernel, from the previous state to the gates"),
    **weights("bias", "zeros", "the bias vector"),
}


# What a recurrent cell computes at one step, the cell's own gates after its activation.
def cell_arguments(**gates) -> dict:
    return {
        "units": (int, param(..., text="Units", help="Size of the hidden state, and of the output at each step.", ge=1)),
        **activation("activation", "tanh", "the candidate state and the output"),
        **gates,
        **USE_BIAS,
        **RECURRENT_WEIGHTS,
    }


DROPOUTS = {
    **fraction("dropout", "Dropout", "In training, fraction of the input features dropped (the same ones at every step)."),
    **fraction("recurrent_dropout", "Recurrent dropout", "In training, fraction of the previous state dropped at each step."),
    **SEED,
}
# How a recurrent layer runs its cell over a sequence.
SEQUENCE = {
    **flag("return_sequences", False, "Return sequences",
           "Output the state at every step `(batch, steps, units)` instead of only the last `(batch, units)`; "
           "needed to stack recurrent layers."),
    **flag("return_state", False, "Return state", "Also output the final state(s) on their own ports."),
    **flag("go_backwards", False, "Go backwards", "Read the sequence from its end; the output of every step is reversed too."),
}
UNROLL = flag("unroll", False, "Unroll",
              "Write the loop out step by step: faster for short sequences, more memory, and the "
              "number of steps must be fixed.")


def recurrent_arguments(model_name: str, examples: list[dict], **gates) -> type:
    """The arguments of a recurrent layer: its cell's, then how it runs over the sequence."""
    return arguments(model_name, examples, **cell_arguments(**gates), **ACTIVITY, **DROPOUTS, **SEQUENCE, **UNROLL, **LAYER)


RECURRENT_ACTIVATION = activation("recurrent_activation", "sigmoid", "the gates")
UNIT_FORGET_BIAS = flag("unit_forget_bias", True, "Unit forget bias",
                        "Start the forget gate's bias at 1, so the cell remembers by default early in training.")
RESET_AFTER = flag("reset_after", True, "Reset after",
                   "Apply the reset gate after the recurrent kernel (the cuDNN-compatible form) rather "
                   "than before it.")
GATED = {
    **RECURRENT_ACTIVATION,
    "use_cudnn": (Literal[tuple(CUDNN_CHOICES)], param(
        "auto", text="Use cuDNN",
        help="The fast GPU kernel: `auto` uses it when the options allow and a GPU is present, "
        "`always` fails when it cannot, `never` keeps the generic loop. No effect on the CPU.")),
}


SIMPLE_STEP = (
    "at each step the new state is the activation of the input and the previous state, each "
    "through its own kernel. It forgets quickly; LSTM or GRU carry information over longer sequences."
)
LSTM_STEP = (
    "a cell state runs along the sequence, and learned gates decide at each step what to forget, "
    "what to store and what to output. Handles long dependencies."
)
GRU_STEP = (
    "like an LSTM with two gates (update and reset) and no separate cell state; fewer weights, "
    "often as good."
)


class RecurrentCard(KerasLayerCard):
    path = ("Layers", "Recurrent")
    sockets = (
        tensor_input(help="A batch of sequences, `(batch, steps, features)`."),
        tensor_input("mask", "Mask",
                     "Optional boolean `(batch, steps)`: steps where it is false are skipped and the state "
                     "carries over. Masks from Masking or Embedding layers arrive without this socket."),
        tensor_input("initial_state", "Initial state",
                     "Optional starting state(s), each `(batch, units)` (an LSTM takes two: hidden, then "
                     "cell, in edge order); zeros when not wired.", multiplicity="n"),
    )
    outputs = (LAYER_OUTPUT, TENSOR_OUTPUT, STATE_H)
    weight_ranks = {"kernel_initializer": 2, "recurrent_initializer": 2, "bias_initializer": 1}
    example_input_shape = (3, 4)

    @classmethod
    def layer_arguments(cls, node, params, sockets):
        arguments = super().layer_arguments(node, params, sockets)
        if "use_cudnn" in arguments:
            arguments["use_cudnn"] = CUDNN_CHOICES[arguments["use_cudnn"]]
        return arguments

    @classmethod
    def params_from_arguments(cls, arguments):
        if "use_cudnn" in arguments:
            choice = {value: key for key, value in CUDNN_CHOICES.items()}.get(arguments["use_cudnn"])
            arguments = {**arguments, "use_cudnn": choice}
        return super().params_from_arguments(arguments)

    @classmethod
    def build(cls, node, params, sockets):
        outputs = super().build(node, params, sockets)
        if params.return_state and "output" in outputs:
            output, *states = outputs["output"]
            outputs["output"] = output
            # stacked cells give one list of states per cell: their states in order, bottom cell first
            outputs.update(zip((p.id for p in cls.outputs[2:]), keras_attribute("keras.tree.flatten")(states)))
        return outputs


class SimpleRNN(RecurrentCard):
    title = "Simple RNN layer"
    help = "The plainest recurrent layer: " + SIMPLE_STEP
    Params = recurrent_arguments("SimpleRNNParams", [{"units": 2}, {"units": 2, "return_sequences": True, "return_state": True}])


class LSTM(RecurrentCard):
    title = "LSTM layer"
    help = "Long short-term memory: " + LSTM_STEP
    Params = recurrent_arguments(
        "LSTMParams", [{"units": 2}, {"units": 2, "return_sequences": True, "return_state": True}],
        **GATED, **UNIT_FORGET_BIAS,
    )
    outputs = (*RecurrentCard.outputs, STATE_C)


class GRU(RecurrentCard):
    title = "GRU layer"
    help = "Gated recurrent unit: " + GRU_STEP
    Params = recurrent_arguments(
        "GRUParams", [{"units": 2}, {"units": 2, "return_sequences": True, "reset_after": False}],
        **GATED, **RESET_AFTER,
    )


# -- cells: one step of a recurrent layer, run over a sequence by the RNN card -------------------

class CellCard(KerasLayerCard):
    path = ("Layers", "Recurrent", "Cells")
    sockets = ()
    outputs = (LAYER_OUTPUT,)
    weight_ranks = RecurrentCard.weight_ranks
    example_consumer = ("layer_RNN", "cell", {})
    example_input_shape = RecurrentCard.example_input_shape


CELL_HELP = " The cell computes one step; wire its `layer` into an RNN card to run it over a sequence."


def cell(keras_class: str, title: str, step: str, examples: list[dict], **gates) -> type:
    return type(keras_class, (CellCard,), {
        "__module__": __name__, "title": title, "help": step[0].upper() + step[1:] + CELL_HELP,
        "Params": arguments(f"{keras_class}Params", examples, **cell_arguments(**gates), **DROPOUTS, **LAYER),
    })


SimpleRNNCell = cell("SimpleRNNCell", "Simple RNN cell", SIMPLE_STEP, [{"units": 2}, {"units": 3, "use_bias": False}])
LSTMCell = cell("LSTMCell", "LSTM cell", LSTM_STEP, [{"units": 2}, {"units": 3, "unit_forget_bias": False}],
                **RECURRENT_ACTIVATION, **UNIT_FORGET_BIAS)
GRUCell = cell("GRUCell", "GRU cell", GRU_STEP, [{"units": 2}, {"units": 3, "reset_after": False}],
               **RECURRENT_ACTIVATION, **RESET_AFTER)


class StackedRNNCells(CellCard):
    title = "Stacked RNN cells"
    help = (
        "Several recurrent cells run as one: at each step the first cell reads the input, each next "
        "cell reads the output of the one before, and every cell keeps its own state. Wire it into "
        "an RNN card (which also stacks cells wired to it directly)."
    )
    Params = arguments("StackedRNNCellsParams", [{}], **LAYER)
    sockets = (layer_input("cells", "Cells", "The cells to stack, bottom first, in the order of their edges.",
                           multiplicity="n"),)
    example_layers = {"cells": ("layer_LSTMCell", {"units": 2})}
    weight_ranks = {}

    @classmethod
    def layer_arguments(cls, node, params, sockets):
        return {**super().layer_arguments(node, params, sockets), "cells": sockets["cells"]}


class RNN(RecurrentCard):
    title = "Recurrent layer of a cell"
    help = (
        "Runs a recurrent cell over a sequence, step by step, carrying the cell's state from one step "
        "to the next. Takes a SimpleRNN, LSTM or GRU cell card (several cells wired here are stacked, "
        "bottom first). The SimpleRNN, LSTM and GRU cards are this with their cell built in."
    )
    Params = arguments(
        "RNNParams", [{}, {"return_sequences": True, "go_backwards": True}],
        **SEQUENCE, **UNROLL,
        **flag("zero_output_for_mask", False, "Zero output for masked steps",
               "With `return_sequences`, output zeros at masked steps instead of repeating the last output."),
        **LAYER,
    )
    sockets = (
        layer_input("cell", "Cell", "The cell to run at each step; several cells, in edge order, are stacked.",
                    multiplicity="n"),
        *RecurrentCard.sockets,
    )
    outputs = (LAYER_OUTPUT, TENSOR_OUTPUT, *(Port(
        port, "NeuralNetworkTensor", text,
        f"The {which} final state of the cell(s), `(batch, state size)`: an LSTM cell's hidden then cell "
        "state, a GRU or simple cell's one state, and with stacked cells the states of every cell in "
        "turn, bottom first. Present when `return_state` is on and the cells have that many states.")
        for port, text, which in (("state_h", "First final state", "first"), ("state_c", "Second final state", "second"))))
    weight_ranks = {}
    example_layers = {"cell": ("layer_GRUCell", {"units": 2})}

    @classmethod
    def layer_arguments(cls, node, params, sockets):
        cells = sockets["cell"]
        return {**super().layer_arguments(node, params, sockets), "cell": cells[0] if len(cells) == 1 else cells}


# -- convolutional LSTMs: the state is a feature map, the gates are convolutions --------------------

class ConvolutionalRecurrentCard(RecurrentCard):
    outputs = LSTM.outputs


FRAMES = {1: ("1-D signals", (3, 8, 2)), 2: ("images (a video)", (3, 6, 6, 2)), 3: ("volumes", (2, 4, 4, 4, 2))}


def convolutional_lstm(dims: int) -> type:
    frames, example_input_shape = FRAMES[dims]
    k = RANKS[dims].each
    return ranked(
        ConvolutionalRecurrentCard, f"ConvLSTM{dims}D", dims, f"Convolutional LSTM {dims}D layer",
        f"An LSTM over a sequence of {frames} whose gates are convolutions instead of matrix "
        "products, so its state keeps the frames' spatial layout: input `(batch, time, ..., channels)`, "
        "state and output one feature map per filter. Forecasts the next frames of radar images or video.",
        arguments(f"ConvLSTM{dims}DParams", [
            {"filters": 2, "kernel_size": k(3)},
            {"filters": 2, "kernel_size": k(3), "padding": "same", "return_sequences": True, "return_state": True},
        ], **FILTERS, **window(dims), **activation("activation", "tanh", "the candidate state and the output"),
            **RECURRENT_ACTIVATION, **USE_BIAS, **RECURRENT_WEIGHTS, **UNIT_FORGET_BIAS, **ACTIVITY, **DROPOUTS,
            **SEQUENCE, **LAYER),
        weight_ranks={"kernel_initializer": dims + 2, "recurrent_initializer": dims + 2, "bias_initializer": 1},
        example_input_shape=example_input_shape,
    )


CARDS = [SimpleRNN, LSTM, GRU, RNN, SimpleRNNCell, LSTMCell, GRUCell, StackedRNNCells,
         *(convolutional_lstm(dims) for dims in (1, 2, 3))]
