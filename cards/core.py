"""Core layers: dense, activation, masking and embedding cards."""

from nncards.card import param

from nncards.card import (ACTIVATIONS, ACTIVITY, LAYER, LORA, USE_BIAS, KerasLayerCard,
                                  activation, arguments, flag, weights)


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


class Embedding(CoreCard):
    title = "Embedding layer"
    help = (
        "Turns integer ids into learned vectors: id `i` becomes row `i` of the embeddings matrix. "
        "The input holds ids from 0 to `input_dim - 1`; the output gains a last axis of size "
        "`output_dim`."
    )
    Params = arguments(
        "EmbeddingParams", [{"input_dim": 10, "output_dim": 3}, {"input_dim": 10, "output_dim": 3, "mask_zero": True}],
        input_dim=(int, param(..., text="Input dimension", help="Number of distinct ids (the largest id plus one).", ge=1)),
        output_dim=(int, param(..., text="Output dimension", help="Length of each embedding vector.", ge=1)),
        **weights("embeddings", "random_uniform", "the embeddings matrix"),
        **flag("mask_zero", False, "Mask zero",
               "Treat id 0 as padding: the output carries a mask that is false where the id was 0, "
               "so masking-aware layers downstream skip those steps. Id 0 then cannot be a real token."),
        **LORA, **LAYER,
    )
    weight_ranks = {"embeddings_initializer": 2}
    example_input_shape = (5,)
    example_input_dtype = "int32"


CARDS = [Dense, Activation, Masking, Embedding]
