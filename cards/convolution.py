"""Convolution layers: Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D and SeparableConv2D cards."""

from nncards.card import param

from nncards.card import (ACTIVITY, DATA_FORMAT, LAYER, USE_BIAS, KerasLayerCard, activation,
                                  arguments, padding, sizes, weights)


class ConvolutionCard(KerasLayerCard):
    path = ("Layers", "Convolution")
    example_input_shape = (8, 8, 3)
    weight_ranks = {"kernel_initializer": 4, "bias_initializer": 1}  # 2-D kernels: (rows, cols, in, out)


def window(dims: int, *paddings: str) -> dict:
    """Where a convolution window goes: its size, its steps, padding and the channel layout."""
    one = 1 if dims == 1 else [1] * dims
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


class Conv1D(ConvolutionCard):
    title = "1D convolution layer"
    help = (
        "Slides `filters` learned windows along a sequence (`batch, steps, channels`) and outputs "
        "one channel per filter at each position: local patterns in time series or text."
    )
    Params = arguments(
        "Conv1DParams", [{"filters": 2, "kernel_size": 3}, {"filters": 4, "kernel_size": 2, "padding": "causal", "dilation_rate": 2}],
        **FILTERS, **window(1, "causal"), **GROUPS, **KERNEL_AND_BIAS,
    )
    weight_ranks = {"kernel_initializer": 3, "bias_initializer": 1}
    example_input_shape = (8, 3)


class Conv2D(ConvolutionCard):
    title = "2D convolution layer"
    help = (
        "Slides `filters` learned windows over an image (`batch, rows, columns, channels`) and "
        "outputs one feature map per filter: the basic building block of image networks."
    )
    Params = arguments(
        "Conv2DParams", [{"filters": 2, "kernel_size": [3, 3]}, {"filters": 4, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}],
        **FILTERS, **window(2), **GROUPS, **KERNEL_AND_BIAS,
    )


class Conv2DTranspose(ConvolutionCard):
    title = "2D transposed convolution layer"
    help = (
        "The reverse of a strided convolution's geometry: spreads each input pixel over a learned "
        "window, so strides above 1 enlarge the image. Used in decoders and segmentation networks."
    )
    Params = arguments(
        "Conv2DTransposeParams", [{"filters": 2, "kernel_size": [3, 3]}, {"filters": 2, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same"}],
        **FILTERS, **window(2),
        **sizes("output_padding", 2, None, "Output padding",
                "Extra rows and columns added on one side of the output, to pick among the output "
                "sizes a stride allows; each must be smaller than its stride. Empty: inferred.",
                minimum=0, optional=True),
        **KERNEL_AND_BIAS,
    )


class DepthwiseConv2D(ConvolutionCard):
    title = "Depthwise 2D convolution layer"
    help = (
        "Convolves each input channel with its own windows, without mixing channels: "
        "`depth_multiplier` output channels per input channel. Far cheaper than a full convolution."
    )
    Params = arguments(
        "DepthwiseConv2DParams", [{"kernel_size": [3, 3]}, {"kernel_size": [3, 3], "depth_multiplier": 2, "padding": "same"}],
        **window(2), **DEPTH_MULTIPLIER, **activation(), **USE_BIAS, **DEPTHWISE, **BIAS, **ACTIVITY, **LAYER,
    )
    weight_ranks = {"depthwise_initializer": 4, "bias_initializer": 1}


class SeparableConv2D(ConvolutionCard):
    title = "Separable 2D convolution layer"
    help = (
        "A depthwise convolution (each channel on its own) followed by a 1×1 pointwise convolution "
        "that mixes the channels into `filters` outputs: most of a full convolution's power for a "
        "fraction of its weights."
    )
    Params = arguments(
        "SeparableConv2DParams", [{"filters": 2, "kernel_size": [3, 3]}, {"filters": 4, "kernel_size": [3, 3], "depth_multiplier": 2}],
        **FILTERS, **window(2), **DEPTH_MULTIPLIER, **activation(), **USE_BIAS, **DEPTHWISE,
        **weights("pointwise", "glorot_uniform", "the 1×1 (pointwise) kernel"), **BIAS, **ACTIVITY, **LAYER,
    )
    weight_ranks = {"depthwise_initializer": 4, "pointwise_initializer": 4, "bias_initializer": 1}


CARDS = [Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D]
