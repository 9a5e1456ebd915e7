"""Convolution layers of every rank: plain, transposed, depthwise and separable convolutions.

Each family's arguments are declared once as a function of the number of spatial axes, and
`ranked` makes its 1-D, 2-D and 3-D cards (Keras has depthwise and separable ones in 1-D and 2-D).
"""

from nncards.card import (ACTIVITY, DATA_FORMAT, LAYER, USE_BIAS, KerasLayerCard, activation, arguments,
                          padding, param, sizes, weights)
from nncards.cards.spatial import RANKS, ranked


class ConvolutionCard(KerasLayerCard):
    path = ("Layers", "Convolution")


def window(dims: int, *paddings: str) -> dict:
    """Where a convolution window goes: its size, its steps, padding and the channel layout."""
    one = RANKS[dims].each(1)
    return {
        **sizes("kernel_size", dims, ..., "Kernel size", "Extent of the window along each spatial axis."),
        **sizes("strides", dims, one, "Strides", "Step between two window positions; above 1 shrinks the output."),
        **padding(*paddings),
        **DATA_FORMAT,
        **sizes("dilation_rate", dims, one, "Dilation rate",
                "Spacing between the window's taps: above 1 sees a wider area with the same weights "
                "(then strides must be 1)."),
    }


FILTERS = {"filters": (int, param(..., text="Filters", help="Number of output channels.", ge=1))}
GROUPS = {"groups": (int, param(
    1, text="Groups", ge=1,
    help="Split the input channels into this many groups, each convolved with its own filters; "
    "both the input channels and `filters` must be divisible by it."))}
DEPTH_MULTIPLIER = {"depth_multiplier": (int, param(
    1, text="Depth multiplier", ge=1, help="Number of output channels made from each input channel."))}
BIAS = weights("bias", "zeros", "the bias vector")
# What follows the geometry of a convolution with a single kernel.
KERNEL_AND_BIAS = {
    **activation(), **USE_BIAS, **weights("kernel", "glorot_uniform", "the convolution kernel"),
    **BIAS, **ACTIVITY, **LAYER,
}
DEPTHWISE = weights("depthwise", "glorot_uniform", "the per-channel (depthwise) kernel")


def output_padding(dims: int) -> dict:
    return sizes("output_padding", dims, None, "Output padding",
                 "Extra steps added on one side of the output along each axis, to pick among the output "
                 "sizes a stride allows; each must be smaller than its stride. Empty: inferred.",
                 minimum=0, optional=True)


def convolution(dims: int) -> type:
    rank = RANKS[dims]
    k = rank.each
    return ranked(
        ConvolutionCard, f"Conv{dims}D", dims, f"{dims}D convolution layer",
        f"Slides `filters` learned windows over {rank.data} and outputs one channel per filter at "
        f"each position: it finds {rank.patterns}.",
        arguments(f"Conv{dims}DParams", [
            {"filters": 2, "kernel_size": k(3)},
            {"filters": 4, "kernel_size": k(2), "padding": "causal" if dims == 1 else "same",
             "dilation_rate": k(2), "activation": "relu"},
        ], **FILTERS, **window(dims, *(("causal",) if dims == 1 else ())), **GROUPS, **KERNEL_AND_BIAS),
        weight_ranks={"kernel_initializer": dims + 2, "bias_initializer": 1},
    )


def transposed(dims: int) -> type:
    rank = RANKS[dims]
    k = rank.each
    return ranked(
        ConvolutionCard, f"Conv{dims}DTranspose", dims, f"{dims}D transposed convolution layer",
        f"The reverse of a strided convolution's geometry on {rank.data}: spreads each input position "
        "over a learned window, so strides above 1 enlarge the output. Used in decoders, generators "
        "and segmentation networks.",
        arguments(f"Conv{dims}DTransposeParams", [
            {"filters": 2, "kernel_size": k(3)},
            {"filters": 2, "kernel_size": k(3), "strides": k(2), "padding": "same"},
        ], **FILTERS, **window(dims), **output_padding(dims), **KERNEL_AND_BIAS),
        weight_ranks={"kernel_initializer": dims + 2, "bias_initializer": 1},
    )


def depthwise(dims: int) -> type:
    rank = RANKS[dims]
    k = rank.each
    return ranked(
        ConvolutionCard, f"DepthwiseConv{dims}D", dims, f"Depthwise {dims}D convolution layer",
        f"Convolves each channel of {rank.data} with its own windows, without mixing channels: "
        "`depth_multiplier` output channels per input channel. Far cheaper than a full convolution.",
        arguments(f"DepthwiseConv{dims}DParams", [
            {"kernel_size": k(3)}, {"kernel_size": k(3), "depth_multiplier": 2, "padding": "same"},
        ], **window(dims), **DEPTH_MULTIPLIER, **activation(), **USE_BIAS, **DEPTHWISE, **BIAS, **ACTIVITY, **LAYER),
        weight_ranks={"depthwise_initializer": dims + 2, "bias_initializer": 1},
    )


def separable(dims: int) -> type:
    rank = RANKS[dims]
    k = rank.each
    return ranked(
        ConvolutionCard, f"SeparableConv{dims}D", dims, f"Separable {dims}D convolution layer",
        f"A depthwise convolution of {rank.data} (each channel on its own) followed by a pointwise "
        "convolution with a window of one that mixes the channels into `filters` outputs: most of a "
        "full convolution's power for a fraction of its weights.",
        arguments(f"SeparableConv{dims}DParams", [
            {"filters": 2, "kernel_size": k(3)}, {"filters": 4, "kernel_size": k(3), "depth_multiplier": 2},
        ], **FILTERS, **window(dims), **DEPTH_MULTIPLIER, **activation(), **USE_BIAS, **DEPTHWISE,
            **weights("pointwise", "glorot_uniform", "the pointwise kernel (window of one)"), **BIAS, **ACTIVITY,
            **LAYER),
        weight_ranks={"depthwise_initializer": dims + 2, "pointwise_initializer": dims + 2, "bias_initializer": 1},
    )


CARDS = [
    *(convolution(dims) for dims in (1, 2, 3)),
    *(transposed(dims) for dims in (1, 2, 3)),
    *(depthwise(dims) for dims in (1, 2)),
    *(separable(dims) for dims in (1, 2)),
]
