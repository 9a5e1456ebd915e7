"""Preprocessing layers whose whole state is given by their arguments: rescaling, normalization
with known statistics, image cropping and resizing, category encoding, hashing, binning and
integer lookup with a given vocabulary, and the mel spectrogram of audio.

Keras can also learn these states from data (`adapt`); a graph has no data before it runs, so
the cards take the state as parameters (mean and variance, bin boundaries, vocabulary) and
leave out the arguments that only serve `adapt`.
"""

from typing import Annotated, Literal

from pydantic import Field

from nncards.card import DATA_FORMAT, LAYER, NAMING, KerasLayerCard, arguments, flag, param, tensor_input
from nncards.cards.merging import TensorListCard


class PreprocessingCard(KerasLayerCard):
    path = ("Layers", "Preprocessing")


# The integer-producing layers choose their output type from `output_mode` and hold no weights:
# only their name is set.
NAME = {"name": NAMING["name"]}


class IntegerPreprocessingCard(PreprocessingCard):
    example_input_shape = (4,)
    example_input_dtype = "int32"


class Rescaling(PreprocessingCard):
    title = "Rescaling layer"
    help = "Multiplies every input by `scale` and adds `offset`, e.g. to bring pixel values from 0–255 to 0–1."
    Params = arguments(
        "RescalingParams", [{"scale": 0.00392156862745098}, {"scale": 0.00784313725490196, "offset": -1.0}],
        scale=(float, param(..., text="Scale", help="The factor, e.g. `1/255` for 8-bit pixels.")),
        offset=(float, param(0.0, text="Offset", help="Added after scaling, e.g. -1 to map 0–2 onto -1–1.")),
        **LAYER,
    )


class Normalization(PreprocessingCard):
    title = "Normalization layer with given statistics"
    state_params = ("mean", "variance")
    help = (
        "Standardizes the input with a known mean and variance per feature: `(x - mean) / "
        "sqrt(variance)` (or back again with `invert`). The statistics are parameters, computed "
        "beforehand on the training data; nothing is learned or updated in training."
    )
    Params = arguments(
        "NormalizationParams", [{"mean": [0.5], "variance": [4.0]}, {"mean": [0.0, 1.0, 2.0, 3.0], "variance": [1.0, 1.0, 2.0, 2.0], "invert": True}],
        axis=(int | None, param(
            -1, text="Axis", help="The features axis: one mean and variance per index along it; empty: one for the whole input.")),
        mean=(list[float], param(..., text="Mean", min_length=1,
                                 help="The mean of each feature, or one number for all of them.")),
        variance=(list[Annotated[float, Field(ge=0)]], param(
            ..., text="Variance", min_length=1, help="The variance of each feature, or one number for all of them.")),
        **flag("invert", False, "Invert", "Undo a standardization instead: `x * sqrt(variance) + mean`."),
        **LAYER,
    )


class ImageSizeCard(PreprocessingCard):
    example_input_shape = (8, 8, 3)


HEIGHT_WIDTH = {
    "height": (int, param(..., text="Height", help="Number of rows of the output image.", ge=1)),
    "width": (int, param(..., text="Width", help="Number of columns of the output image.", ge=1)),
}
FILL_MODES = Literal["constant", "reflect", "wrap", "nearest"]
INTERPOLATIONS = Literal["nearest", "bilinear", "bicubic", "lanczos3", "lanczos5", "area"]


class CenterCrop(ImageSizeCard):
    title = "Center crop layer"
    help = (
        "Cuts the central `height` × `width` region out of each image. An image smaller than that "
        "is resized to it instead, so the output size is always the same."
    )
    Params = arguments("CenterCropParams", [{"height": 4, "width": 4}, {"height": 6, "width": 3}], **HEIGHT_WIDTH, **DATA_FORMAT, **LAYER)


class Resizing(ImageSizeCard):
    title = "Resizing layer"
    help = "Resizes each image to `height` × `width`, interpolating pixels; optionally keeps the aspect ratio by cropping or padding."
    Params = arguments(
        "ResizingParams", [{"height": 4, "width": 4}, {"height": 6, "width": 3, "interpolation": "nearest", "crop_to_aspect_ratio": True}],
        **HEIGHT_WIDTH,
        interpolation=(INTERPOLATIONS, param("bilinear", text="Interpolation", help="How output pixels are computed from the input's.")),
        **flag("crop_to_aspect_ratio", False, "Crop to aspect ratio",
               "Crop the largest central region of the output's aspect ratio first, so nothing is stretched."),
        **flag("pad_to_aspect_ratio", False, "Pad to aspect ratio",
               "Pad the image to the output's aspect ratio first (with `fill_value`), so nothing is stretched or cut."),
        fill_mode=(Literal["constant"], param("constant", text="Fill mode", help="How padding is filled: with `fill_value`.")),
        fill_value=(float, param(0.0, text="Fill value", help="The value of padded pixels.")),
        **flag("antialias", False, "Antialias", "Smooth the image before shrinking it, so fine patterns do not alias."),
        **DATA_FORMAT, **LAYER,
    )


ENCODINGS = {
    "one_hot": "one vector per id with a 1 at the id",
    "multi_hot": "one vector per sample with a 1 at every id it holds",
    "count": "one vector per sample counting how often it holds each id",
}


def output_mode(*modes: str, default: str) -> dict:
    described = "; ".join(f"`{mode}`: {ENCODINGS[mode]}" for mode in modes if mode in ENCODINGS)
    return {"output_mode": (Literal[modes], param(
        default, text="Output mode",
        help=("`int`: the index itself; " if "int" in modes else "") + described + "."))}


class CategoryEncoding(IntegerPreprocessingCard):
    title = "Category encoding layer"
    help = "Turns integer ids from 0 to `num_tokens - 1` into one-hot, multi-hot or count vectors of length `num_tokens`."
    Params = arguments(
        "CategoryEncodingParams", [{"num_tokens": 5}, {"num_tokens": 5, "output_mode": "count"}],
        num_tokens=(int, param(..., text="Tokens", ge=1, help="Number of distinct ids; every input id must be below it.")),
        **output_mode("one_hot", "multi_hot", "count", default="multi_hot"),
        **LAYER,
    )


NUM_BINS = {"num_bins": (int, param(..., text="Bins", ge=1, help="Number of hash bins, the size of the output index range."))}


class Hashing(IntegerPreprocessingCard):
    title = "Hashing layer"
    help = (
        "Maps each integer id to one of `num_bins` bins by a hash (FarmHash, or SipHash with a "
        "`salt`): a fixed-size index for ids from an open-ended set, no vocabulary needed. Distinct "
        "ids may share a bin."
    )
    Params = arguments(
        "HashingParams", [{"num_bins": 5}, {"num_bins": 5, "mask_value": 0, "output_mode": "count"}],
        **NUM_BINS,
        mask_value=(int | None, param(None, text="Mask value",
                                      help="An id that maps to bin 0 and is masked; the others hash into the remaining bins.")),
        salt=(int | None, param(None, text="Salt", ge=0, help="When set, a keyed SipHash with this key is used instead of FarmHash.")),
        **output_mode("int", "one_hot", "multi_hot", "count", default="int"),
        **NAME,
    )


class HashedCrossing(IntegerPreprocessingCard, TensorListCard):
    title = "Hashed crossing layer"
    help = (
        "Crosses two categorical features: hashes each pair of ids (one from each input) into one "
        "of `num_bins` bins, a fixed-size index for feature combinations such as `(city, weekday)`."
    )
    Params = arguments(
        "HashedCrossingParams", [{"num_bins": 5}, {"num_bins": 5, "output_mode": "one_hot"}],
        **NUM_BINS, **output_mode("int", "one_hot", default="int"), **NAME,
    )
    sockets = (tensor_input("inputs", "Inputs", "The two id features to cross, `(batch, 1)` each, in edge order.",
                            required=True, multiplicity="n"),)
    input_count = (2, 2)
    example_input_shape = (1,)

    @classmethod
    def build(cls, node, params, sockets):
        layer = cls.make_layer(node, params, sockets)
        return {"layer": layer, "output": layer(tuple(sockets["inputs"]))}


class Discretization(PreprocessingCard):
    title = "Discretization layer with given bins"
    help = (
        "Sorts numbers into bins between given boundaries: with boundaries `[0, 1]` a value below 0 "
        "gets bin 0, from 0 up to 1 bin 1, and from 1 on bin 2."
    )
    Params = arguments(
        "DiscretizationParams", [{"bin_boundaries": [0.0, 1.0]}, {"bin_boundaries": [-1.0, 0.0, 1.0], "output_mode": "one_hot"}],
        bin_boundaries=(list[float], param(..., text="Bin boundaries", min_length=1,
                                           help="The boundaries between bins, in increasing order.")),
        **output_mode("int", "one_hot", "multi_hot", "count", default="int"),
        **NAME,
    )


class IntegerLookup(IntegerPreprocessingCard):
    title = "Integer lookup layer with a given vocabulary"
    help = (
        "Maps integer ids to their index in a given vocabulary (or, with `invert`, indices back to "
        "ids). Ids outside the vocabulary go to out-of-vocabulary indices, which come first; a "
        "`mask_token` comes before them."
    )
    Params = arguments(
        "IntegerLookupParams", [{"vocabulary": [3, 7, 11]}, {"vocabulary": [3, 7, 11], "mask_token": 0, "output_mode": "multi_hot"},
                                {"vocabulary": [3, 7, 11], "num_oov_indices": 2, "oov_method": "farmhash", "salt": 5}],
        vocabulary=(list[int], param(..., text="Vocabulary", min_length=1, help="The known ids, each once, in index order.")),
        num_oov_indices=(int, param(1, text="Out-of-vocabulary indices", ge=0,
                                    help="How many indices unknown ids are spread over; 0: unknown ids are an error.")),
        oov_method=(Literal["floormod", "farmhash"], param(
            "floormod", text="Out-of-vocabulary method",
            help="How an unknown id picks one of several out-of-vocabulary indices: its remainder "
            "(`floormod`) or a hash (`farmhash`), which spreads sequential ids more evenly.")),
        salt=(int | None, param(None, text="Salt", ge=0, help="With `farmhash`: a key for the hash; empty: unkeyed.")),
        mask_token=(int | None, param(None, text="Mask token", help="An id that means padding: index 0, masked downstream.")),
        oov_token=(int, param(-1, text="Out-of-vocabulary token", help="The id that an out-of-vocabulary index maps back to with `invert`.")),
        **flag("invert", False, "Invert", "Map indices back to vocabulary ids."),
        **output_mode("int", "one_hot", "multi_hot", "count", default="int"),
        **flag("pad_to_max_tokens", False, "Pad to max tokens", "Pad encoded outputs to `max_tokens` entries."),
        max_tokens=(int | None, param(None, text="Max tokens", ge=1, help="Size cap of the index range, with `pad_to_max_tokens`.")),
        vocabulary_dtype=(Literal["int32", "int64"], param("int64", text="Vocabulary type", help="Integer type of the ids.")),
        **NAME,
    )


class MelSpectrogram(PreprocessingCard):
    title = "Mel spectrogram layer"
    help = (
        "Turns audio into a mel spectrogram: short windows of the signal are transformed into "
        "frequencies, pooled into `num_mel_bins` bands spaced as human hearing is, and by default "
        "expressed in decibels. Input `(batch, samples)`, output `(batch, num_mel_bins, frames)`."
    )
    Params = arguments(
        "MelSpectrogramParams", [{"fft_length": 64, "sequence_stride": 16, "num_mel_bins": 8},
                                 {"fft_length": 64, "sequence_stride": 32, "num_mel_bins": 4, "power_to_db": False}],
        fft_length=(int, param(2048, text="FFT length", ge=1, help="Samples per window transformed to frequencies.")),
        sequence_stride=(int, param(512, text="Stride", ge=1, help="Samples between the starts of two windows.")),
        sequence_length=(int | None, param(None, text="Window length", ge=1,
                                           help="Samples of signal per window, padded to `fft_length`; empty: `fft_length`.")),
        window=(Literal["hann", "hamming"] | None, param("hann", text="Window", help="Taper applied to each window; empty: none.")),
        sampling_rate=(int, param(16000, text="Sampling rate", ge=1, help="Samples per second of the audio.")),
        num_mel_bins=(int, param(128, text="Mel bands", ge=1, help="Number of mel frequency bands.")),
        min_freq=(float, param(20.0, text="Lowest frequency", ge=0, help="Lower edge of the lowest band, in hertz.")),
        max_freq=(float | None, param(None, text="Highest frequency", gt=0,
                                      help="Upper edge of the highest band, in hertz; empty: half the sampling rate.")),
        **flag("power_to_db", True, "In decibels", "Express the band energies in decibels."),
        top_db=(float, param(80.0, text="Decibel range", gt=0, help="Values more than this far below the peak are raised to it.")),
        mag_exp=(float, param(2.0, text="Magnitude exponent", gt=0, help="1 for magnitudes, 2 for power.")),
        min_power=(float, param(1e-10, text="Minimum power", gt=0, help="Floor of the energies before the logarithm.")),
        ref_power=(float, param(1.0, text="Reference power", gt=0, help="The energy that is 0 dB.")),
        **LAYER,
    )
    example_input_shape = (256,)


CARDS = [Rescaling, Normalization, CenterCrop, Resizing, CategoryEncoding, Hashing, HashedCrossing, Discretization,
         IntegerLookup, MelSpectrogram]
