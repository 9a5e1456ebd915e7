"""Image augmentation layers: random changes of geometry and colour applied in training only.

Each layer draws a fresh change per image at every training step, so the network sees more
variety than the data holds; at inference (predict, evaluate, a `call` without training) the
images pass through unchanged. Inputs are batches of images `(batch, rows, columns, channels)`
whose pixel values span `value_range`.

Keras takes many strengths either as one number or as a `(low, high)` pair; the cards take a
list of one or two numbers (`Span`) and hand Keras the number or the pair.
"""

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from nncards.card import DATA_FORMAT, LAYER, SEED, KerasLayerCard, arguments, flag, param

INTERPOLATIONS = Literal["nearest", "bilinear"]
FILL_MODES = Literal["reflect", "wrap", "constant", "nearest"]


def span(field: str, default: Any, text: str, help: str, lowest: float | None = None,
         highest: float | None = None, number: type = float) -> dict:
    """A strength given as one number or as `[low, high]` (optional when its default is None)."""
    annotation = list[Annotated[number, Field(ge=lowest, le=highest)]]
    annotation = annotation | None if default is None else annotation
    return {field: (annotation, param(default, text=text, min_length=1, max_length=2, help=help))}


def pair(field: str, default: list[float], text: str, help: str) -> dict:
    return {field: (list[float], param(default, text=text, min_length=2, max_length=2, help=help))}


VALUE_RANGE = pair("value_range", [0.0, 255.0], "Value range",
                   "`[lowest, highest]` pixel value of the input images, e.g. `[0, 1]` after rescaling.")
FILL = {
    "fill_mode": (FILL_MODES, param(
        "reflect", text="Fill mode",
        help="How pixels moved in from outside the image are filled: mirrored (`reflect`), tiled "
        "(`wrap`), with `fill_value` (`constant`) or from the nearest edge pixel (`nearest`).")),
    "interpolation": (INTERPOLATIONS, param("bilinear", text="Interpolation", help="How moved pixels are resampled.")),
    "fill_value": (float, param(0.0, text="Fill value", help="The value of filled pixels with `constant`.")),
}
IMAGE = {**SEED, **DATA_FORMAT, **LAYER}
IN_TRAINING = " Only in training; at inference images pass through unchanged."


class AugmentationCard(KerasLayerCard):
    path = ("Layers", "Augmentation")
    example_input_shape = (8, 8, 3)
    # Fields that Keras takes as a number or a pair (lists of one or two) or as a pair only.
    spans: ClassVar[tuple[str, ...]] = ("factor",)

    @classmethod
    def layer_arguments(cls, node, params, sockets):
        arguments = super().layer_arguments(node, params, sockets)
        for field, value in arguments.items():  # every list of these layers is a span or a pair
            if isinstance(value, list) and (field in cls.spans or len(value) == 2):
                arguments[field] = value[0] if len(value) == 1 else tuple(value)
        return arguments


def augmentation(keras_class: str, title: str, help: str, examples: list[dict], *, spans: tuple[str, ...] = ("factor",),
                 **fields) -> type:
    return type(keras_class, (AugmentationCard,), {
        "__module__": __name__, "title": title, "help": help + IN_TRAINING, "spans": spans,
        "Params": arguments(f"{keras_class}Params", examples, **fields),
    })


def factor(default: Any, help: str, lowest: float | None = 0, highest: float | None = None) -> dict:
    return span("factor", default, "Factor", help, lowest, highest)


# -- geometry ---------------------------------------------------------------------------------------

RandomFlip = augmentation(
    "RandomFlip", "Random flip layer", "Mirrors each image at random, left–right, top–bottom or both.",
    [{}, {"mode": "horizontal", "seed": 1}],
    mode=(Literal["horizontal", "vertical", "horizontal_and_vertical"], param(
        "horizontal_and_vertical", text="Mode", help="Which flips may happen, each with probability one half.")),
    **IMAGE,
)
RandomRotation = augmentation(
    "RandomRotation", "Random rotation layer",
    "Rotates each image by a random angle, given as a fraction of a full turn: `[0.1]` draws from "
    "-36° to 36°, `[-0.1, 0.2]` from -36° to 72°.",
    [{"factor": [0.1]}, {"factor": [-0.1, 0.2], "fill_mode": "constant"}],
    **factor(..., "Largest rotation as a fraction of a full turn, or `[low, high]`.", lowest=-1, highest=1),
    **FILL, **IMAGE,
)
RandomTranslation = augmentation(
    "RandomTranslation", "Random translation layer",
    "Shifts each image by a random fraction of its height and width.",
    [{"height_factor": [0.1], "width_factor": [0.1]}, {"height_factor": [-0.2, 0.1], "width_factor": [0.0], "fill_mode": "nearest"}],
    spans=("height_factor", "width_factor"),
    **span("height_factor", ..., "Height factor", "Largest vertical shift as a fraction of the height, or `[low, high]`.", -1, 1),
    **span("width_factor", ..., "Width factor", "Largest horizontal shift as a fraction of the width, or `[low, high]`.", -1, 1),
    **FILL, **IMAGE,
)
RandomZoom = augmentation(
    "RandomZoom", "Random zoom layer",
    "Zooms each image in or out by a random amount: a negative factor zooms in, a positive one out "
    "(`[0.2]` draws from 20 % in to 20 % out).",
    [{"height_factor": [0.2]}, {"height_factor": [-0.3, -0.1], "width_factor": [-0.2, 0.0]}],
    spans=("height_factor", "width_factor"),
    **span("height_factor", ..., "Height factor", "Zoom range of the height as a fraction, or `[low, high]`.", -1, 1),
    **span("width_factor", None, "Width factor",
           "Zoom range of the width, or `[low, high]`; empty: the same zoom as the height.", -1, 1),
    **FILL, **IMAGE,
)
RandomShear = augmentation(
    "RandomShear", "Random shear layer",
    "Slants each image by a random shear along x (rows shifted sideways) and y (columns shifted up or down).",
    [{"x_factor": [0.2]}, {"x_factor": [0.1], "y_factor": [0.0, 0.2], "fill_mode": "constant"}],
    spans=("x_factor", "y_factor"),
    **span("x_factor", [0.0], "X factor", "Largest horizontal shear, or `[low, high]`.", 0, 1),
    **span("y_factor", [0.0], "Y factor", "Largest vertical shear, or `[low, high]`.", 0, 1),
    **FILL, **IMAGE,
)
RandomPerspective = augmentation(
    "RandomPerspective", "Random perspective layer",
    "Tilts each image as if seen from a different angle, moving its corners at random.",
    [{}, {"factor": [0.5], "scale": 0.5}],
    **factor([1.0], "Probability of changing an image, or `[low, high]` of it.", 0, 1),
    scale=(float, param(1.0, text="Scale", ge=0, le=1, help="How far the corners may move, as a fraction of half the image.")),
    interpolation=FILL["interpolation"], fill_value=FILL["fill_value"], **IMAGE,
)
RandomElasticTransform = augmentation(
    "RandomElasticTransform", "Random elastic transform layer",
    "Warps each image with a smooth random displacement field, like a rubber sheet: handwriting and "
    "microscopy models learn to ignore such distortions.",
    [{}, {"factor": [0.5], "scale": 0.5}],
    **factor([1.0], "Probability of warping an image, or `[low, high]` of it.", 0, 1),
    scale=(float, param(1.0, text="Scale", ge=0, le=1, help="Strength of the displacement.")),
    **FILL, **VALUE_RANGE, **IMAGE,
)
RandomErasing = augmentation(
    "RandomErasing", "Random erasing layer",
    "Blanks out a random rectangle of each image (with noise or `fill_value`), so the network "
    "learns not to rely on any one region.",
    [{}, {"factor": [0.5], "scale": [0.1, 0.2], "fill_value": 0.0}],
    **factor([1.0], "Probability of erasing a rectangle in an image, or `[low, high]` of it.", 0, 1),
    **pair("scale", [0.02, 0.33], "Scale", "`[low, high]` of the erased area as a fraction of the image."),
    fill_value=(float | None, param(None, text="Fill value", help="Value of the erased pixels; empty: random noise.")),
    **VALUE_RANGE, **IMAGE,
)

# -- colour and tone --------------------------------------------------------------------------------

RandomBrightness = augmentation(
    "RandomBrightness", "Random brightness layer",
    "Adds a random offset to all pixels of each image, a fraction of the value range: `[0.2]` "
    "draws from -20 % to +20 %.",
    [{"factor": [0.2]}, {"factor": [-0.1, 0.3], "value_range": [0.0, 1.0]}],
    **factor(..., "Largest change as a fraction of the value range, or `[low, high]`.", -1, 1),
    **VALUE_RANGE, **SEED, **LAYER,
)
RandomContrast = augmentation(
    "RandomContrast", "Random contrast layer",
    "Scales each image's deviation from its mean by a random factor between `1 - factor` and `1 + factor`.",
    [{"factor": [0.2]}, {"factor": [0.1, 0.5]}],
    **factor(..., "Largest change of contrast, or `[low, high]`.", 0, 1),
    **VALUE_RANGE, **SEED, **LAYER,
)
RandomSaturation = augmentation(
    "RandomSaturation", "Random saturation layer",
    "Changes each image's colour saturation at random: 0.5 leaves it, lower values wash colours "
    "out towards grey, higher ones make them more vivid.",
    [{"factor": [0.5]}, {"factor": [0.3, 0.7]}],
    **factor(..., "Saturation change, or `[low, high]`, from 0 (grey) through 0.5 (unchanged) to 1.", 0, 1),
    **VALUE_RANGE, **IMAGE,
)
RandomHue = augmentation(
    "RandomHue", "Random hue layer",
    "Shifts the colours of each image around the colour wheel by a random amount.",
    [{"factor": [0.2]}, {"factor": [0.1, 0.3]}],
    **factor(..., "Largest hue shift as a fraction of the wheel, or `[low, high]`.", 0, 1),
    **VALUE_RANGE, **IMAGE,
)
RandomColorDegeneration = augmentation(
    "RandomColorDegeneration", "Random colour degeneration layer",
    "Blends each image with its greyscale version by a random amount, dulling its colours.",
    [{"factor": [0.5]}, {"factor": [0.1, 0.3]}],
    **factor(..., "Largest share of greyscale, or `[low, high]`.", 0, 1),
    **VALUE_RANGE, **IMAGE,
)
JITTER = {field: value for what in ("brightness", "contrast", "saturation", "hue") for field, value in span(
    f"{what}_factor", None, f"{what.capitalize()} factor",
    f"Strength of the random {what} change, or `[low, high]`, as in the {what} layer; empty: no {what} change.",
    0, 1).items()}
RandomColorJitter = augmentation(
    "RandomColorJitter", "Random colour jitter layer",
    "Brightness, contrast, saturation and hue changed at random in one layer, each with its own strength.",
    [{"brightness_factor": [0.2], "contrast_factor": [0.2]}, {"saturation_factor": [0.4, 0.6], "hue_factor": [0.1]}],
    spans=("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor"),
    **VALUE_RANGE,
    **JITTER,
    **IMAGE,
)
RandomGrayscale = augmentation(
    "RandomGrayscale", "Random greyscale layer",
    "Turns each image into greyscale with probability `factor`, keeping its number of channels.",
    [{}, {"factor": 0.2}], spans=(),
    factor=(float, param(0.5, text="Factor", ge=0, le=1, help="Probability that an image turns grey.")),
    **IMAGE,
)
RandomInvert = augmentation(
    "RandomInvert", "Random invert layer",
    "Inverts each image (each pixel becomes its opposite within the value range) with a random probability.",
    [{}, {"factor": [0.5]}],
    **factor([1.0], "Probability of inverting an image, or `[low, high]` of it.", 0, 1),
    **VALUE_RANGE, **IMAGE,
)
RandomPosterization = augmentation(
    "RandomPosterization", "Random posterization layer",
    "Reduces each image's colours to fewer levels, keeping a random number of bits per channel "
    "between 1 and `factor`.",
    [{"factor": [4]}, {"factor": [2, 6]}],
    **span("factor", ..., "Factor", "Most bits kept per channel (1 to 8), or `[low, high]`.", 1, 8, number=int),
    **VALUE_RANGE, **IMAGE,
)
RandomSharpness = augmentation(
    "RandomSharpness", "Random sharpness layer",
    "Sharpens or blurs each image by a random amount: 0.5 leaves it, lower values blur, higher ones sharpen.",
    [{"factor": [0.5]}, {"factor": [0.2, 0.8]}],
    **factor(..., "Sharpness change, or `[low, high]`, from 0 (blurred) through 0.5 (unchanged) to 1.", 0, 1),
    **VALUE_RANGE, **IMAGE,
)
RandomGaussianBlur = augmentation(
    "RandomGaussianBlur", "Random Gaussian blur layer",
    "Blurs each image with a Gaussian kernel of random width.",
    [{}, {"factor": [0.5], "kernel_size": 5, "sigma": [0.2, 0.8]}], spans=("factor", "sigma"),
    **factor([1.0], "Probability of blurring an image, or `[low, high]` of it.", 0, 1),
    kernel_size=(int, param(3, text="Kernel size", ge=1, help="Width of the blur kernel in pixels, an odd number.")),
    **span("sigma", [1.0], "Sigma", "Standard deviation of the blur kernel (Keras allows at most 1), or `[low, high]`.", 0, 1),
    **VALUE_RANGE, **IMAGE,
)
Solarization = augmentation(
    "Solarization", "Solarization layer",
    "Inverts the pixels above a random threshold (like over-exposed film), after adding a random "
    "brightness offset.",
    [{"threshold_factor": [0.5]}, {"addition_factor": [0.1], "threshold_factor": [0.2, 0.6]}],
    spans=("addition_factor", "threshold_factor"),
    **span("addition_factor", [0.0], "Addition factor", "Largest brightness offset as a fraction of the value range, or `[low, high]`.", 0, 1),
    **span("threshold_factor", [0.0], "Threshold factor",
           "Largest distance of the threshold below the top of the value range, as a fraction, or `[low, high]`.", 0, 1),
    **VALUE_RANGE, **SEED, **LAYER,
)

# -- whole-image adjustments and policies -------------------------------------------------------------

AutoContrast = augmentation(
    "AutoContrast", "Auto contrast layer",
    "Stretches each image's values so that its darkest pixel becomes the bottom of the value range "
    "and its brightest the top, per channel. Not random, and applied at inference too.",
    [{}, {"value_range": [0.0, 1.0]}], spans=(), **VALUE_RANGE, **LAYER,
)
ContrastLimitedAdaptiveHistogramEqualization = augmentation(
    "ContrastLimitedAdaptiveHistogramEqualization", "Contrast-limited adaptive histogram equalization layer",
    "Histogram equalization per tile of a grid (CLAHE), with each tile's contrast gain capped at "
    "`clip_limit` so noise is not amplified. Not random, and applied at inference too.",
    [{"tile_grid_size": [2, 2]}, {"tile_grid_size": [4, 4], "clip_limit": 2.0}], spans=(),
    **VALUE_RANGE,
    clip_limit=(float, param(4.0, text="Clip limit", gt=0, help="Cap on each tile's contrast gain.")),
    tile_grid_size=(list[Annotated[int, Field(ge=1)]], param(
        [8, 8], text="Tile grid", min_length=2, max_length=2, help="`[rows, columns]` of the grid of tiles.")),
    **DATA_FORMAT, **LAYER,
)
AugMix = augmentation(
    "AugMix", "AugMix layer",
    "Mixes each image with several chains of random augmentations, weighted at random, which "
    "makes models more robust to shifts in the data.",
    [{}, {"num_chains": 2, "chain_depth": 2, "factor": [0.5]}],
    **VALUE_RANGE,
    num_chains=(int, param(3, text="Chains", ge=1, help="Number of augmentation chains mixed.")),
    chain_depth=(int, param(3, text="Chain depth", ge=1, help="Most augmentations in one chain.")),
    **factor([0.3], "Strength of each augmentation, or `[low, high]`.", 0, 1),
    alpha=(float, param(1.0, text="Alpha", gt=0, help="Concentration of the random mixing weights.")),
    **flag("all_ops", True, "All operations", "Use every augmentation, colour ones included; off: geometric ones only."),
    interpolation=FILL["interpolation"], **IMAGE,
)
RandAugment = augmentation(
    "RandAugment", "RandAugment layer",
    "Applies `num_ops` augmentations picked at random from a fixed list (rotation, shear, "
    "colour, contrast…) to each image, all with the one strength `factor`.",
    [{}, {"num_ops": 1, "factor": [0.3]}],
    **VALUE_RANGE,
    num_ops=(int, param(2, text="Operations", ge=1, help="Augmentations applied to each image.")),
    **factor([0.5], "Strength of every augmentation, or `[low, high]`.", 0, 1),
    interpolation=FILL["interpolation"], **IMAGE,
)

CARDS = [
    RandomFlip, RandomRotation, RandomTranslation, RandomZoom, RandomShear, RandomPerspective, RandomElasticTransform,
    RandomErasing, RandomBrightness, RandomContrast, RandomSaturation, RandomHue, RandomColorDegeneration,
    RandomColorJitter, RandomGrayscale, RandomInvert, RandomPosterization, RandomSharpness, RandomGaussianBlur,
    Solarization, AutoContrast, ContrastLimitedAdaptiveHistogramEqualization, AugMix, RandAugment,
]
