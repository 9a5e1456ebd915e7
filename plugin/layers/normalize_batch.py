"""A layer around `nncards.ops.normalize_batch_in_training`, so a graph can apply the function."""

from __future__ import annotations

import keras

from nncards.ops import normalize_batch_in_training


@keras.saving.register_keras_serializable(package="nncards")
class NormalizeBatchInTraining(keras.layers.Layer):
    """Returns `(normalized, mean, variance)` of its input with this batch's statistics.

    Args:
        reduction_axes: the axes the statistics are taken over (non-negative, batch axis 0).
        epsilon: added to the variance before its square root.
    """

    def __init__(self, reduction_axes, epsilon=0.001, **kwargs):
        super().__init__(**kwargs)
        axes = list(reduction_axes)
        if not axes or any(isinstance(a, bool) or not isinstance(a, int) or a < 0 for a in axes) \
                or len(set(axes)) != len(axes):
            raise ValueError(f"reduction_axes must be distinct non-negative integers. "
                             f"Received: reduction_axes={reduction_axes!r}")
        self.reduction_axes = axes
        self.epsilon = float(epsilon)

    def call(self, inputs):
        return normalize_batch_in_training(inputs, None, None, self.reduction_axes, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "reduction_axes": self.reduction_axes, "epsilon": self.epsilon}
