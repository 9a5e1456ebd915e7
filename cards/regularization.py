"""Regularization layers that act only in training: Dropout, SpatialDropout2D and GaussianNoise cards."""

from typing import Annotated

from pydantic import Field

from nncards.card import param

from nncards.card import DATA_FORMAT, LAYER, NAMING, SEED, KerasLayerCard, arguments, fraction


class RegularizationCard(KerasLayerCard):
    path = ("Layers", "Regularization")


class Dropout(RegularizationCard):
    title = "Dropout layer"
    help = (
        "In training, sets a random fraction `rate` of the inputs to zero and scales the rest by "
        "`1 / (1 - rate)`, so the expected sum is unchanged. At inference it passes inputs through."
    )
    Params = arguments(
        "DropoutParams", [{"rate": 0.5}, {"rate": 0.2, "noise_shape": [None, 1], "seed": 3}],
        **fraction("rate", "Rate", "Fraction of the inputs set to zero in each training step.", default=...),
        noise_shape=(list[Annotated[int, Field(ge=1)] | None] | None, param(
            None, text="Noise shape",
            help="Shape of the random keep/drop pattern, batch axis included, broadcast over the "
            "input: a 1 drops whole slices along that axis together (e.g. `[null, 1, null]` drops "
            "the same features at every time step). `null` entries take the input's size.")),
        **SEED, **LAYER,
    )


class SpatialDropout2D(RegularizationCard):
    title = "Spatial dropout 2D layer"
    help = (
        "Dropout for images: in training it drops whole channels (feature maps) instead of single "
        "pixels, which suits convolutional features whose neighbouring pixels are strongly correlated."
    )
    Params = arguments(
        "SpatialDropout2DParams", [{"rate": 0.5}, {"rate": 0.2, "data_format": "channels_first"}],
        **fraction("rate", "Rate", "Fraction of the channels set to zero in each training step.", default=...), **DATA_FORMAT, **SEED, **NAMING,
    )
    example_input_shape = (4, 4, 3)


class GaussianNoise(RegularizationCard):
    title = "Gaussian noise layer"
    help = (
        "In training, adds zero-mean normal noise of standard deviation `stddev` to every input, a "
        "regularizer for real-valued inputs. At inference it passes inputs through."
    )
    Params = arguments(
        "GaussianNoiseParams", [{"stddev": 0.1}, {"stddev": 0.5, "seed": 3}],
        **fraction("stddev", "Standard deviation", "Spread of the added noise.", default=...),
        **SEED, **LAYER,
    )


CARDS = [Dropout, SpatialDropout2D, GaussianNoise]
