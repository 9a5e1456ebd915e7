"""Reshaping layers: Flatten, Reshape, Permute, RepeatVector, and zero padding, cropping and
up-sampling of every rank."""

from typing import Annotated, Literal

from pydantic import Field, field_validator

from nncards.card import DATA_FORMAT, LAYER, KerasLayerCard, arguments, param, sizes
from nncards.cards.spatial import RANKS, flat_margins, keras_margins, margins, ranked


class ReshapingCard(KerasLayerCard):
    path = ("Layers", "Reshaping")


def _one_unknown(cls, target_shape):
    if 0 in target_shape:
        raise ValueError("a dimension of 0 is not allowed")
    if target_shape.count(-1) > 1:
        raise ValueError("at most one dimension may be -1")
    return target_shape


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


class RepeatVector(ReshapingCard):
    title = "Repeat vector layer"
    help = (
        "Repeats each sample's feature vector `n` times along a new time axis: `(batch, features)` "
        "becomes `(batch, n, features)`. Feeds one summary vector to every step of a recurrent "
        "decoder."
    )
    Params = arguments(
        "RepeatVectorParams", [{"n": 3}],
        n=(int, param(..., text="Repetitions", help="How many steps the new time axis has.", ge=1)),
        **LAYER,
    )


class MarginCard(ReshapingCard):
    """A layer that adds or removes an amount on each side of each spatial axis."""

    margin: str  # the name of the Keras argument holding the amounts

    @classmethod
    def layer_arguments(cls, node, params, sockets):
        arguments = super().layer_arguments(node, params, sockets)
        arguments[cls.margin] = keras_margins(arguments[cls.margin], cls.dims)
        return arguments

    @classmethod
    def params_from_arguments(cls, arguments):
        if cls.margin in arguments:
            arguments = {**arguments, cls.margin: flat_margins(arguments[cls.margin], cls.dims)}
        return super().params_from_arguments(arguments)


def zero_padding(dims: int) -> type:
    fields, validators = margins("padding", dims, [1] * dims, "Padding", "Zeros added")
    return ranked(
        MarginCard, f"ZeroPadding{dims}D", dims, f"Zero padding {dims}D layer",
        f"Adds zeros around {RANKS[dims].data}, along each spatial axis, e.g. to keep a "
        "convolution's output the size of its input or to line two branches up.",
        arguments(f"ZeroPadding{dims}DParams", [{}, {"padding": list(range(2 * dims))}], validators,
                  **fields, **DATA_FORMAT, **LAYER),
        margin="padding",
    )


def cropping(dims: int) -> type:
    # Keras' defaults: one step off each end of a sequence, nothing off an image, one off each side of a volume.
    fields, validators = margins("cropping", dims, [0, 0] if dims == 2 else [1] * dims, "Cropping", "Positions removed")
    data_format = DATA_FORMAT if dims > 1 else {}  # Keras' Cropping1D always crops the steps axis
    return ranked(
        MarginCard, f"Cropping{dims}D", dims, f"Cropping {dims}D layer",
        f"Cuts positions off the borders of {RANKS[dims].data}, along each spatial axis; the channels "
        "are kept. Lines up the two sides of a skip connection whose sizes differ.",
        arguments(f"Cropping{dims}DParams", [{"cropping": [1] * dims}, {"cropping": [0, 1] * dims}], validators,
                  **fields, **data_format, **LAYER),
        margin="cropping",
    )


INTERPOLATIONS = Literal["nearest", "bilinear", "bicubic", "lanczos3", "lanczos5", "area"]


def up_sampling(dims: int) -> type:
    extra = {} if dims != 2 else {"interpolation": (INTERPOLATIONS, param(
        "nearest", text="Interpolation",
        help="How new pixels get their values: `nearest` repeats pixels; the others blend neighbours."))}
    data_format = DATA_FORMAT if dims > 1 else {}  # Keras' UpSampling1D always repeats the steps axis
    k = RANKS[dims].each
    return ranked(
        ReshapingCard, f"UpSampling{dims}D", dims, f"Up-sampling {dims}D layer",
        f"Enlarges {RANKS[dims].data} by whole factors along each spatial axis"
        + (", repeating or interpolating pixels." if dims == 2 else ", repeating each position."),
        arguments(f"UpSampling{dims}DParams", [{}, {"size": k(3) if dims == 1 else [2, 3, 1][:dims]}, *(
            [{"size": [2, 2], "interpolation": "bilinear"}] if dims == 2 else [])],
                  **sizes("size", dims, k(2), "Size", "Factor by which each spatial axis is enlarged."),
                  **data_format, **extra, **LAYER),
    )


CARDS = [
    Flatten, Reshape, Permute, RepeatVector,
    *(zero_padding(dims) for dims in (1, 2, 3)),
    *(cropping(dims) for dims in (1, 2, 3)),
    *(up_sampling(dims) for dims in (1, 2, 3)),
]
