"""Reshaping layers: Flatten, Reshape, Permute, ZeroPadding2D and UpSampling2D cards."""

from typing import Annotated, Literal

from pydantic import Field, field_validator

from nncards.card import param

from nncards.card import DATA_FORMAT, LAYER, KerasLayerCard, arguments, sizes


class ReshapingCard(KerasLayerCard):
    path = ("Layers", "Reshaping")


def _one_unknown(cls, target_shape):
    if 0 in target_shape:
        raise ValueError("a dimension of 0 is not allowed")
    if target_shape.count(-1) > 1:
        raise ValueError("at most one dimension may be -1")
    return target_shape


def _two_or_four(cls, padding):
    if len(padding) not in (2, 4):
        raise ValueError(f"padding takes 2 or 4 numbers, got {len(padding)}")
    return padding


def _permutation(cls, dims):
    if sorted(dims) != list(range(1, len(dims) + 1)):
        raise ValueError(f"dims must be a permutation of 1..{len(dims)}")
    return dims


class Flatten(ReshapingCard):
    title = "Flatten layer"
    help = "Collapses every axis but the batch axis into one, e.g. `(batch, 4, 4, 8)` becomes `(batch, 128)`."
    Params = arguments("FlattenParams", [{}, {"data_format": "channels_first"}], **DATA_FORMAT, **LAYER)
    example_input_shape = (2, 3)


class Reshape(ReshapingCard):
    title = "Reshape layer"
    help = "Gives each sample a new shape with the same number of elements; the batch axis is kept."
    Params = arguments(
        "ReshapeParams", [{"target_shape": [2, 2]}, {"target_shape": [-1, 1]}],
        {"_one_unknown": field_validator("target_shape")(_one_unknown)},
        target_shape=(list[Annotated[int, Field(ge=-1)]], param(
            ..., text="Target shape", min_length=1,
            help="The new shape of one sample, without the batch axis. One entry may be -1: it "
            "takes whatever size makes the element count match.")),
        **LAYER,
    )


class Permute(ReshapingCard):
    title = "Permute layer"
    help = "Reorders the axes of each sample, e.g. swaps time and features; the batch axis stays first."
    Params = arguments(
        "PermuteParams", [{"dims": [2, 1]}],
        {"_permutation": field_validator("dims")(_permutation)},
        dims=(list[Annotated[int, Field(ge=1)]], param(
            ..., text="Dimensions", min_length=1,
            help="The new order of the axes, counted from 1 (the batch axis 0 is left out): `[2, 1]` "
            "swaps the two axes of a sequence.")),
        **LAYER,
    )
    example_input_shape = (3, 4)


class ZeroPadding2D(ReshapingCard):
    title = "Zero padding 2D layer"
    help = "Adds rows and columns of zeros around each image."
    Params = arguments(
        "ZeroPadding2DParams", [{}, {"padding": [1, 0, 2, 2]}],
        {"_two_or_four": field_validator("padding")(_two_or_four)},
        padding=(list[Annotated[int, Field(ge=0)]], param(
            [1, 1], text="Padding", min_length=2, max_length=4,
            help="`[rows, columns]` added on both sides, or `[top, bottom, left, right]`.")),
        **DATA_FORMAT, **LAYER,
    )
    example_input_shape = (4, 4, 3)

    @classmethod
    def layer_arguments(cls, node, params, sockets):
        arguments = super().layer_arguments(node, params, sockets)
        padding = arguments["padding"]
        if len(padding) == 4:
            arguments["padding"] = (tuple(padding[:2]), tuple(padding[2:]))
        return arguments


class UpSampling2D(ReshapingCard):
    title = "Up-sampling 2D layer"
    help = "Enlarges each image by whole factors, repeating or interpolating pixels."
    Params = arguments(
        "UpSampling2DParams", [{}, {"size": [2, 3], "interpolation": "bilinear"}],
        **sizes("size", 2, [2, 2], "Size", "Factor by which rows and columns are multiplied."),
        **DATA_FORMAT,
        interpolation=(Literal["nearest", "bilinear", "bicubic", "lanczos3", "lanczos5", "area"], param(
            "nearest", text="Interpolation",
            help="How new pixels get their values: `nearest` repeats pixels; the others blend neighbours.")),
        **LAYER,
    )
    example_input_shape = (4, 4, 3)


CARDS = [Flatten, Reshape, Permute, ZeroPadding2D, UpSampling2D]
