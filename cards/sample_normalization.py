"""Normalization within each sample (no batch statistics): layer, RMS, group and unit normalization cards.

Unlike batch normalization they behave the same in training and at inference, and a sample's
output never depends on the rest of its batch.
"""

from nncards.card import param

from nncards.card import LAYER, KerasLayerCard, arguments, flag, weights


class SampleNormalizationCard(KerasLayerCard):
    path = ("Layers", "Normalization")


def axis(help: str) -> dict:
    return {"axis": (int, param(-1, text="Axis", help=help))}


# What layer and group normalization share after their own arguments.
AFFINE = {
    "epsilon": (float, param(
        0.001, text="Epsilon", gt=0,
        help="Small positive number added to the variance before its square root, so that constant "
        "features do not divide by zero.")),
    **flag("center", True, "Center", "Learn an offset `beta` added after normalization."),
    **flag("scale", True, "Scale", "Learn a factor `gamma` applied after normalization."),
    **weights("beta", "zeros", "the offset `beta`"),
    **weights("gamma", "ones", "the factor `gamma`"),
    **LAYER,
}
AFFINE_RANKS = {"beta_initializer": 1, "gamma_initializer": 1}


class LayerNormalization(SampleNormalizationCard):
    title = "Layer normalization layer"
    help = (
        "Normalizes each sample over its features to zero mean and unit variance, then applies a "
        "learned per-feature scale and offset. The usual normalization of transformers and "
        "recurrent networks, where batch statistics are awkward."
    )
    Params = arguments(
        "LayerNormalizationParams", [{}, {"epsilon": 1e-5, "center": False}],
        **axis("The axis whose entries are normalized together, per sample; -1 is the last."), **AFFINE,
    )
    weight_ranks = AFFINE_RANKS


class GroupNormalization(SampleNormalizationCard):
    title = "Group normalization layer"
    help = (
        "Splits each sample's channels into `groups` and normalizes every group on its own (over the "
        "group's channels and all positions), then applies a learned per-channel scale and offset. "
        "Works with any batch size, which makes it the choice for small-batch image training."
    )
    Params = arguments(
        "GroupNormalizationParams", [{"groups": 2}, {"groups": 4, "epsilon": 1e-5}],
        groups=(int, param(
            32, text="Groups", ge=1,
            help="Number of channel groups; must divide the number of channels. As many groups as "
            "channels gives instance normalization, one group gives layer normalization.")),
        **axis("The channel axis; -1 for channels-last data."), **AFFINE,
    )
    weight_ranks = AFFINE_RANKS


class UnitNormalization(SampleNormalizationCard):
    title = "Unit normalization layer"
    help = "Divides each sample by its Euclidean (L2) norm along an axis, so that it has length one. No weights."
    Params = arguments(
        "UnitNormalizationParams", [{}, {"axis": 1}],
        **axis("The axis along which each vector gets unit length; -1 is the last."), **LAYER,
    )


class RMSNormalization(SampleNormalizationCard):
    title = "RMS normalization layer"
    help = (
        "Divides each sample by the root mean square of its features along an axis, then applies a "
        "learned per-feature scale. Layer normalization without centering: cheaper, and the usual "
        "choice of recent transformers."
    )
    Params = arguments(
        "RMSNormalizationParams", [{}, {"epsilon": 1e-5}],
        **axis("The axis whose entries are normalized together, per sample; -1 is the last."),
        epsilon=(float, param(
            1e-6, text="Epsilon", gt=0,
            help="Small positive number added to the mean square before its square root, so that an "
            "all-zero sample does not divide by zero.")),
        **LAYER,
    )


CARDS = [LayerNormalization, RMSNormalization, GroupNormalization, UnitNormalization]
