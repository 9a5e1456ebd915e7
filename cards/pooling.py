"""Pooling layers of every rank: windowed max/average pooling, adaptive pooling to a fixed output
size, and global pooling over all positions."""

from nncards.card import DATA_FORMAT, LAYER, KerasLayerCard, arguments, flag, padding, sizes
from nncards.cards.spatial import RANKS, ranked


class PoolingCard(KerasLayerCard):
    path = ("Layers", "Pooling")


def pool_window(dims: int, default) -> dict:
    return {
        **sizes("pool_size", dims, default, "Pool size", "Extent of the pooling window along each spatial axis."),
        **sizes("strides", dims, None, "Strides", "Step between two window positions; empty: the pool size, so windows do not overlap.",
                optional=True),
        **padding(), **DATA_FORMAT, **LAYER,
    }


GLOBAL = {
    **DATA_FORMAT,
    **flag("keepdims", False, "Keep dimensions",
           "Keep the pooled axes with size 1, so the output has the input's rank."),
    **LAYER,
}
# What each kind of pooling does to a window, and what that is good for.
KINDS = {
    "Max": ("Max", "Keeps the largest value of each window, per channel", "keeps its strongest local responses"),
    "Average": ("Average", "Averages each window, per channel", "smooths it"),
}


def windowed(kind: str, dims: int) -> type:
    name, does, effect = KINDS[kind]
    k = RANKS[dims].each
    # Keras gives max pooling a default window of 2 but makes average pooling's required.
    default = k(2) if kind == "Max" else ...
    return ranked(
        PoolingCard, f"{kind}Pooling{dims}D", dims, f"{name} pooling {dims}D layer",
        f"{does}: shrinks {RANKS[dims].data} and {effect}.",
        arguments(f"{kind}Pooling{dims}DParams", [{"pool_size": k(2)}, {"pool_size": k(3), "strides": k(1), "padding": "same"}],
                  **pool_window(dims, default)),
    )


def adaptive(kind: str, dims: int) -> type:
    name, does, _ = KINDS[kind]
    k = RANKS[dims].each
    return ranked(
        PoolingCard, f"Adaptive{kind}Pooling{dims}D", dims, f"Adaptive {name.lower()} pooling {dims}D layer",
        f"{does}, with windows sized so that the output of {RANKS[dims].data} has exactly "
        "`output_size` positions along each spatial axis, whatever the input's size: a fixed-size "
        "summary for a classifier after inputs of varying size.",
        arguments(f"Adaptive{kind}Pooling{dims}DParams", [{"output_size": k(2)}, {"output_size": k(3)}],
                  **sizes("output_size", dims, ..., "Output size", "Number of output positions along each spatial axis."),
                  **DATA_FORMAT, **LAYER),
    )


GLOBAL_DOES = {
    "Max": "Keeps the largest value of each channel over all positions of {data}: whether a pattern occurs anywhere.",
    "Average": "Averages each channel over all positions of {data}: the usual bridge from convolutions to a classifier.",
}


def global_pooling(kind: str, dims: int) -> type:
    masked = " Masked steps (from a Masking layer or an Embedding with `mask_zero`) are left out." \
        if (kind, dims) == ("Average", 1) else ""
    return ranked(
        PoolingCard, f"Global{kind}Pooling{dims}D", dims, f"Global {KINDS[kind][0].lower()} pooling {dims}D layer",
        GLOBAL_DOES[kind].format(data=RANKS[dims].data) + " One value per channel remains." + masked,
        arguments(f"Global{kind}Pooling{dims}DParams", [{}, {"keepdims": True}], **GLOBAL),
    )


CARDS = [
    *(windowed(kind, dims) for kind in KINDS for dims in (1, 2, 3)),
    *(adaptive(kind, dims) for kind in KINDS for dims in (1, 2, 3)),
    *(global_pooling(kind, dims) for kind in KINDS for dims in (1, 2, 3)),
]
