"""Recurrent layers: SimpleRNN, LSTM and GRU cards.

Keras' `stateful` option is left out: it needs a batch size fixed in the model, and an Input
card describes one sample, never the batch.
"""

from typing import Literal

from nncards.card import LAYER_OUTPUT, TENSOR_OUTPUT, Port, param, tensor_input

from nncards.card import (ACTIVITY, LAYER, SEED, USE_BIAS, KerasLayerCard, activation, arguments,
                                  flag, fraction, weights)

CUDNN_CHOICES = {"auto": "auto", "always": True, "never": False}
STATE_H = Port("state_h", "NeuralNetworkTensor", "Final state",
               "The hidden state after the last step, `(batch, units)`; present when `return_state` is on.")
STATE_C = Port("state_c", "NeuralNetworkTensor", "Final cell state",
               "The LSTM's cell state after the last step, `(batch, units)`; present when `return_state` is on.")


def recurrent_arguments(model_name: str, examples: list[dict], **gates) -> type:
    """The arguments every recurrent layer has, with the cell's own `gates` after the activation."""
    return arguments(
        model_name, examples,
        units=(int, param(..., text="Units", help="Size of the hidden state, and of the output at each step.", ge=1)),
        **activation("activation", "tanh", "the candidate state and the output"),
        **gates,
        **USE_BIAS,
        **weights("kernel", "glorot_uniform", "the input kernel, from the input features to the gates"),
        **weights("recurrent", "orthogonal", "the recurrent kernel, from the previous state to the gates"),
        **weights("bias", "zeros", "the bias vector"),
        **ACTIVITY,
        **fraction("dropout", "Dropout", "In training, fraction of the input features dropped (the same ones at every step)."),
        **fraction("recurrent_dropout", "Recurrent dropout", "In training, fraction of the previous state dropped at each step."),
        **SEED,
        **flag("return_sequences", False, "Return sequences",
               "Output the state at every step `(batch, steps, units)` instead of only the last `(batch, units)`; "
               "needed to stack recurrent layers."),
        **flag("return_state", False, "Return state", "Also output the final state(s) on their own ports."),
        **flag("go_backwards", False, "Go backwards", "Read the sequence from its end; the output of every step is reversed too."),
        **flag("unroll", False, "Unroll",
               "Write the loop out step by step: faster for short sequences, more memory, and the "
               "number of steps must be fixed."),
        **LAYER,
    )


GATED = {
    **activation("recurrent_activation", "sigmoid", "the gates"),
    "use_cudnn": (Literal[tuple(CUDNN_CHOICES)], param(
        "auto", text="Use cuDNN",
        help="The fast GPU kernel: `auto` uses it when the options allow and a GPU is present, "
        "`always` fails when it cannot, `never` keeps the generic loop. No effect on the CPU.")),
}


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
    def build(cls, node, params, sockets):
        outputs = super().build(node, params, sockets)
        if params.return_state and "output" in outputs:
            output, *states = outputs["output"]
            outputs["output"] = output
            outputs.update(zip((p.id for p in cls.outputs[2:]), states))
        return outputs


class SimpleRNN(RecurrentCard):
    title = "Simple RNN layer"
    help = (
        "The plainest recurrent layer: at each step the new state is the activation of the input "
        "and the previous state, each through its own kernel. It forgets quickly; LSTM or GRU "
        "carry information over longer sequences."
    )
    Params = recurrent_arguments("SimpleRNNParams", [{"units": 2}, {"units": 2, "return_sequences": True, "return_state": True}])


class LSTM(RecurrentCard):
    title = "LSTM layer"
    help = (
        "Long short-term memory: a cell state runs along the sequence, and learned gates decide at "
        "each step what to forget, what to store and what to output. Handles long dependencies."
    )
    Params = recurrent_arguments(
        "LSTMParams", [{"units": 2}, {"units": 2, "return_sequences": True, "return_state": True}],
        **GATED,
        **flag("unit_forget_bias", True, "Unit forget bias",
               "Start the forget gate's bias at 1, so the cell remembers by default early in training."),
    )
    outputs = (*RecurrentCard.outputs, STATE_C)


class GRU(RecurrentCard):
    title = "GRU layer"
    help = (
        "Gated recurrent unit: like an LSTM with two gates (update and reset) and no separate cell "
        "state; fewer weights, often as good."
    )
    Params = recurrent_arguments(
        "GRUParams", [{"units": 2}, {"units": 2, "return_sequences": True, "reset_after": False}],
        **GATED,
        **flag("reset_after", True, "Reset after",
               "Apply the reset gate after the recurrent kernel (the cuDNN-compatible form) rather "
               "than before it."),
    )


CARDS = [SimpleRNN, LSTM, GRU]
