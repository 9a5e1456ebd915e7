"""Pooling layers: windowed max/average pooling and their global forms."""

from nncards.card import param

from nncards.card import DATA_FORMAT, LAYER, KerasLayerCard, arguments, flag, padding, sizes


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
MAX_HELP = "Keeps the largest value of each window, per channel: "
AVERAGE_HELP = "Averages each window, per channel: "


class MaxPooling1D(PoolingCard):
    title = "Max pooling 1D layer"
    help = MAX_HELP + "shortens a sequence and keeps its strongest local responses."
    Params = arguments("MaxPooling1DParams", [{}, {"pool_size": 3, "strides": 1, "padding": "same"}], **pool_window(1, 2))
    example_input_shape = (8, 3)


class MaxPooling2D(PoolingCard):
    title = "Max pooling 2D layer"
    help = MAX_HELP + "shrinks an image and keeps its strongest local responses."
    Params = arguments("MaxPooling2DParams", [{}, {"pool_size": [3, 3], "strides": [1, 1], "padding": "same"}], **pool_window(2, [2, 2]))
    example_input_shape = (8, 8, 3)


class AveragePooling1D(PoolingCard):
    title = "Average pooling 1D layer"
    help = AVERAGE_HELP + "shortens and smooths a sequence."
    Params = arguments("AveragePooling1DParams", [{"pool_size": 2}, {"pool_size": 3, "strides": 1, "padding": "same"}], **pool_window(1, ...))
    example_input_shape = (8, 3)


class AveragePooling2D(PoolingCard):
    title = "Average pooling 2D layer"
    help = AVERAGE_HELP + "shrinks and smooths an image."
    Params = arguments("AveragePooling2DParams", [{"pool_size": [2, 2]}, {"pool_size": [3, 3], "strides": [1, 1], "padding": "same"}], **pool_window(2, ...))
    example_input_shape = (8, 8, 3)


class GlobalAveragePooling1D(PoolingCard):
    title = "Global average pooling 1D layer"
    help = (
        "Averages a sequence over all its steps, one value per channel. Masked steps (from a "
        "Masking layer or an Embedding with `mask_zero`) are left out of the average."
    )
    Params = arguments("GlobalAveragePooling1DParams", [{}, {"keepdims": True}], **GLOBAL)
    example_input_shape = (5, 3)


class GlobalAveragePooling2D(PoolingCard):
    title = "Global average pooling 2D layer"
    help = "Averages each feature map over all its pixels, one value per channel: the usual bridge from convolutions to a classifier."
    Params = arguments("GlobalAveragePooling2DParams", [{}, {"keepdims": True}], **GLOBAL)
    example_input_shape = (4, 4, 3)


class GlobalMaxPooling2D(PoolingCard):
    title = "Global max pooling 2D layer"
    help = "Keeps the largest value of each feature map, one value per channel: whether a pattern occurs anywhere in the image."
    Params = arguments("GlobalMaxPooling2DParams", [{}, {"keepdims": True}], **GLOBAL)
    example_input_shape = (4, 4, 3)


CARDS = [MaxPooling1D, MaxPooling2D, AveragePooling1D, AveragePooling2D,
         GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalMaxPooling2D]
