"""Regularization layers: dropouts and noise that act only in training, and a penalty on activations."""

from typing import Annotated

from pydantic import Field

from nncards.card import DATA_FORMAT, LAYER, NAMING, SEED, KerasLayerCard, arguments, fraction, param
from nncards.cards.spatial import RANKS, ranked


class RegularizationCard(KerasLayerCard):
    path = ("Layers", "Regularization")


RATE = fraction("rate", "Rate", "Fraction of the inputs dropped in each training step.", default=...)
NOISE_SHAPE = {"noise_shape": (list[Annotated[int, Field(ge=1)] | None] | None, param(
    None, text="Noise shape",
    help="Shape of the random keep/drop pattern, batch axis included, broadcast over the "
    "input: a 1 drops whole slices along that axis together (e.g. `[null, 1, null]` drops "
    "the same features at every time step). `null` entries take the input's size."))}


class Dropout(RegularizationCard):
    title = "Dropout layer"
    help = (
        "In training, sets a random fraction `rate` of the inputs to zero and scales the rest by "
        "`1 / (1 - rate)`, so the expected sum is unchanged. At inference it passes inputs through."
    )
    Params = arguments(
        "DropoutParams", [{"rate": 0.5}, {"rate": 0.2, "noise_shape": [None, 1], "seed": 3}],
        **RATE, **NOISE_SHAPE, **SEED, **LAYER,
    )


def spatial_dropout(dims: int) -> type:
    data_format = DATA_FORMAT if dims > 1 else {}  # Keras' SpatialDropout1D is channels-last only
    return ranked(
        RegularizationCard, f"SpatialDropout{dims}D", dims, f"Spatial dropout {dims}D layer",
        f"Dropout for {RANKS[dims].data}: in training it drops whole channels (every position of a "
        "feature at once) instead of single values, which suits convolutional features whose "
        "neighbouring positions are strongly correlated. At inference it passes inputs through.",
        arguments(f"SpatialDropout{dims}DParams", [{"rate": 0.5}, {"rate": 0.2, "seed": 3}],
                  **RATE, **data_format, **SEED, **NAMING),
    )


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


class GaussianDropout(RegularizationCard):
    title = "Gaussian dropout layer"
    help = (
        "In training, multiplies every input by random noise of mean 1 drawn from a normal "
        "distribution whose spread follows from `rate` (standard deviation `sqrt(rate / (1 - rate))`): "
        "dropout's regularizing effect without zeros. At inference it passes inputs through."
    )
    Params = arguments("GaussianDropoutParams", [{"rate": 0.5}, {"rate": 0.1, "seed": 3}], **RATE, **SEED, **LAYER)


class AlphaDropout(RegularizationCard):
    title = "Alpha dropout layer"
    help = (
        "Dropout for self-normalizing networks (SELU activations): in training, dropped inputs are "
        "set to SELU's negative saturation value instead of zero, and the result is shifted and "
        "scaled so that mean and variance stay as they were. At inference it passes inputs through."
    )
    Params = arguments("AlphaDropoutParams", [{"rate": 0.5}, {"rate": 0.2, "noise_shape": [None, 1], "seed": 3}],
                       **RATE, **NOISE_SHAPE, **SEED, **LAYER)


class ActivityRegularization(RegularizationCard):
    title = "Activity regularization layer"
    help = (
        "Passes its input through unchanged and adds a penalty on it to the training loss: `l1` "
        "times the sum of absolute values plus `l2` times the sum of squares. Pushes the activations "
        "before it towards small or sparse values."
    )
    Params = arguments(
        "ActivityRegularizationParams", [{"l1": 0.01}, {"l1": 0.0, "l2": 0.001}],
        l1=(float, param(0.0, text="L1 factor", ge=0, help="Weight of the sum of absolute values.")),
        l2=(float, param(0.0, text="L2 factor", ge=0, help="Weight of the sum of squares.")),
        **LAYER,
    )


CARDS = [Dropout, *(spatial_dropout(dims) for dims in (1, 2, 3)), GaussianNoise, GaussianDropout, AlphaDropout,
         ActivityRegularization]
