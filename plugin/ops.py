"""Functions that are not layers, kept as Keras 2 (tf_keras) defined them.

TensorFlow is imported on first call, so importing this module stays cheap.
"""

from __future__ import annotations


def _nchw_kernel_available() -> bool:
    """Keras 2 fuses channels-first batches only where a GPU can run them."""
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def normalize_batch_in_training(x, gamma, beta, reduction_axes, epsilon=0.001):
    """Normalize `x` with the statistics of this batch, as `tf_keras.backend` does.

    Args:
        x: the tensor to normalize.
        gamma: factor applied after normalization, shaped like the kept axes; `None` for none.
        beta: offset added after normalization, shaped like the kept axes; `None` for none.
        reduction_axes: the axes the statistics are taken over (the batch axis among them).
        epsilon: added to the variance before its square root.

    Returns:
        `(normalized, mean, variance)`; `mean` and `variance` have the shape of the axes not
        reduced (no batch axis, no kept unit dimensions).

    Which computation runs depends on the arguments, exactly as in Keras 2, and so does the
    variance returned (the normalization always uses the biased one):

    - a 4-D `x` reduced over exactly `[0, 1, 2]` (channels last), or over `[0, 2, 3]` when a
      GPU is visible (channels first): TensorFlow's fused kernel, which returns the
      **unbiased** variance (`N / (N - 1)` times the biased one; 0 when `N = 1`);
    - otherwise the **biased** variance: plain moments when the reduction covers every axis but
      the last (in any order), moments broadcast back to `x`'s rank in every other case.

    So on the CPU `[0, 2, 3]` gives the biased variance, and on a GPU the unbiased one.
    """
    import tensorflow as tf

    rank = len(x.shape)
    axes = list(reduction_axes)
    if rank == 4 and (axes == [0, 1, 2] or (axes == [0, 2, 3] and _nchw_kernel_available())):
        channel, data_format = (3, "NHWC") if axes == [0, 1, 2] else (1, "NCHW")
        size = [x.shape[channel]]
        gamma = tf.constant(1.0, x.dtype, size) if gamma is None else gamma
        beta = tf.constant(0.0, x.dtype, size) if beta is None else beta
        return tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=epsilon, data_format=data_format)
    mean, variance = tf.nn.moments(x, axes, keepdims=False)
    if sorted(axes) == list(range(rank - 1)):
        return tf.nn.batch_normalization(x, mean, variance, beta, gamma, epsilon), mean, variance
    kept = tf.stack([1 if axis in axes else tf.shape(x)[axis] for axis in range(rank)])

    def broadcast(value):
        return None if value is None else tf.reshape(value, kept)

    normalized = tf.nn.batch_normalization(x, broadcast(mean), broadcast(variance), broadcast(beta),
                                           broadcast(gamma), epsilon)
    return normalized, mean, variance
