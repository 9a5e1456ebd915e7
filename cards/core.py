"""Core layers: dense and einsum-dense, activation, identity, masking and embedding cards."""

import re

from pydantic import field_validator

from nncards.card import (ACTIVATIONS, ACTIVITY, DTYPES, LAYER, LORA, USE_BIAS, KerasLayerCard, activation, arguments,
                          flag, param, weights)


class CoreCard(KerasLayerCard):
    path = ("Layers", "Core")


class Dense(CoreCard):
    title = "Dense layer"
    help = (
        "A fully connected layer: every output unit is a weighted sum of all input features plus "
        "a bias, optionally passed through an activation. On inputs with more than two axes it "
        "acts on the last axis only, the same weights for every position."
    )
    Params = arguments(
        "DenseParams", [{"units": 3}, {"units": 8, "activation": "relu", "use_bias": False}],
        units=(int, param(..., text="Units", help="Number of output features.", ge=1)),
        **activation(),
        **USE_BIAS,
        **weights("kernel", "glorot_uniform", "the kernel, the matrix from input features to units"),
        **weights("bias", "zeros", "the bias vector"),
        **ACTIVITY, **LORA, **LAYER,
    )
    weight_ranks = {"kernel_initializer": 2, "bias_initializer": 1}


class Activation(CoreCard):
    title = "Activation layer"
    help = "Applies an element-wise activation function; it has no weights."
    Params = arguments(
        "ActivationParams", [{"activation": "relu"}, {"activation": "softmax"}],
        activation=(ACTIVATIONS, param(..., text="Activation", help="The function to apply.")),
        **LAYER,
    )


class Masking(CoreCard):
    title = "Masking layer"
    help = (
        "Marks time steps to skip: a step whose features all equal `mask_value` is masked, and "
        "layers downstream that understand masks (recurrent layers, pooling, batch normalization) "
        "leave it out. Use it on padded sequences of real numbers; for token ids, an Embedding with "
        "`mask_zero` does the same."
    )
    Params = arguments(
        "MaskingParams", [{}, {"mask_value": -1.0}],
        mask_value=(float, param(0.0, text="Mask value", help="The padding value that marks a step as masked.")),
        **LAYER,
    )
    example_input_shape = (3, 4)


EMBEDDING = {
    "input_dim": (int, param(..., text="Input dimension", help="Number of distinct ids (the largest id plus one).", ge=1)),
    "output_dim": (int, param(..., text="Output dimension", help="Length of each embedding vector.", ge=1)),
    **weights("embeddings", "random_uniform", "the embeddings matrix"),
    **flag("mask_zero", False, "Mask zero",
           "Treat id 0 as padding: the output carries a mask that is false where the id was 0, "
           "so masking-aware layers downstream skip those steps. Id 0 then cannot be a real token."),
}
EMBEDDING_HELP = (
    "Turns integer ids into learned vectors: id `i` becomes row `i` of the embeddings matrix. "
    "The input holds ids from 0 to `input_dim - 1`; the output gains a last axis of size "
    "`output_dim`."
)


class EmbeddingCard(CoreCard):
    weight_ranks = {"embeddings_initializer": 2}
    example_input_shape = (5,)
    example_input_dtype = "int32"


class Embedding(EmbeddingCard):
    title = "Embedding layer"
    help = EMBEDDING_HELP
    Params = arguments(
        "EmbeddingParams", [{"input_dim": 10, "output_dim": 3}, {"input_dim": 10, "output_dim": 3, "mask_zero": True}],
        **EMBEDDING, **LORA, **LAYER,
    )


class ReversibleEmbedding(EmbeddingCard):
    title = "Reversible embedding layer"
    help = (
        EMBEDDING_HELP + " With `reverse` on, the card runs the other way: it turns vectors of "
        "`output_dim` features into one score per id (the product with the transposed embeddings), "
        "as the output layer of a language model whose input embedding it mirrors."
    )
    Params = arguments(
        "ReversibleEmbeddingParams", [{"input_dim": 10, "output_dim": 3}, {"input_dim": 10, "output_dim": 3, "tie_weights": False}],
        **EMBEDDING,
        **flag("tie_weights", True, "Tie weights",
               "Use the embeddings matrix itself for the reverse direction; off: a separate learned matrix."),
        reverse_dtype=(DTYPES | None, param(
            None, text="Reverse data type",
            help="Computation type of the reverse direction, e.g. `float32` for precise scores under a "
            "mixed policy; empty: the layer's own.")),
        logit_soft_cap=(float | None, param(
            None, text="Logit soft cap", gt=0,
            help="When set, reverse scores are squashed smoothly into `(-cap, cap)` by `cap * tanh(score / cap)`.")),
        **flag("reverse", False, "Reverse", "Map vectors to scores per id instead of ids to vectors (a call option)."),
        **LAYER,
    )
    call_options = ("reverse",)


def _einsum_equation(cls, equation):
    if not re.fullmatch(r"(\.\.\.)?[a-zA-Z]+(\.\.\.)?,[a-zA-Z]+->(\.\.\.)?[a-zA-Z]+(\.\.\.)?", equation.replace(" ", "")):
        raise ValueError("equation must read `input,kernel->output` with letters for axes, e.g. `ab,bc->ac`")
    return equation


class EinsumDense(CoreCard):
    title = "Einsum dense layer"
    help = (
        "A dense layer written as an Einstein sum, for weights over several axes at once: the "
        "`equation` names each axis of the input, of the learned kernel and of the output with a "
        "letter (`ab,bc->ac` is an ordinary dense layer; `abc,cde->abde` projects the features of "
        "every step into heads). Letters missing from the output are summed over."
    )
    Params = arguments(
        "EinsumDenseParams", [
            {"equation": "abc,cd->abd", "output_shape": [3, 3]},
            {"equation": "abc,cde->abde", "output_shape": [3, 2, 3], "bias_axes": "de", "activation": "relu"},
        ],
        {"_equation": field_validator("equation")(_einsum_equation)},
        equation=(str, param(..., text="Equation", min_length=5, help="`input,kernel->output` axis letters, batch axis included.")),
        output_shape=(list[int | None], param(
            ..., text="Output shape", min_length=1,
            help="Shape of the output without the batch axis; `null` for an axis that keeps the input's size.")),
        **activation(),
        bias_axes=(str | None, param(
            None, text="Bias axes", min_length=1,
            help="Output axis letters that get a learned bias, e.g. `de`; empty: no bias.")),
        **weights("kernel", "glorot_uniform", "the kernel"),
        **weights("bias", "zeros", "the bias"),
        **LORA, **LAYER,
    )
    weight_ranks = {"kernel_initializer": 2, "bias_initializer": 1}
    example_input_shape = (3, 4)


class Identity(CoreCard):
    title = "Identity layer"
    help = "Passes its input through unchanged: a named placeholder, e.g. where a block may later hold a real layer."
    Params = arguments("IdentityParams", [{}], **LAYER)


CARDS = [Dense, EinsumDense, Activation, Identity, Masking, Embedding, ReversibleEmbedding]
