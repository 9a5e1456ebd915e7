"""Batch normalization with the options Keras 3 dropped: `fused`, `virtual_batch_size`, `adjustment`.

The layer extends `keras.layers.BatchNormalization`, so its weights are stock Keras' (gamma,
beta, moving_mean, moving_variance, all of shape `(C,)`) and move between the two both ways.
The options reproduce Keras 2's (tf_keras) training outputs; moving statistics keep the Keras 3
convention (biased variance) whichever option is in play. Semantics: BN_SEMANTICS.md §1, §4.4–4.5.
"""

from __future__ import annotations

import functools
import math

import keras
import tensorflow as tf
from keras.src.backend.common.stateless_scope import in_stateless_scope
from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext

from nncards.layers import batch_norm_op
from nncards.layers.bn_rules import (ADJUSTMENT_KEYS, FUSED_DATA_FORMATS, TRAINABLE_SEMANTICS, Kernel, Options,
                                     axes_of, axes_out_of_range, normalized_axes, op_fallback)


def _adjustment_range(key: str, value) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"adjustment[{key!r}] must be a pair [low, high] of numbers. Received: {value!r}")
    low, high = float(value[0]), float(value[1])
    if low > high:
        raise ValueError(f"adjustment[{key!r}] must have low <= high. Received: {value!r}")
    return low, high


def _compose(scale, offset, then_scale, then_offset):
    """The affine map `then ∘ first` of two per-feature maps `v ↦ v·scale + offset`."""
    if then_scale is not None:
        scale = scale * then_scale
        offset = offset * then_scale
    if then_offset is not None:
        offset = offset + then_offset
    return scale, offset


@functools.cache
def _xla_batch_norm(rank: int, axis: int, epsilon: float):
    """`(x, gamma, beta) → (y, mean, variance)` in training, with the forward and backward passes
    each one XLA cluster: the statistics in float32 with Keras 3's two-pass variance, the output
    in Keras 3's order of operations, and the gradient of batch normalization written out (two
    reductions and one elementwise pass) instead of differentiated op by op.

    Everything runs on a (P, C, Q) view of the input (the axes before the features, the features,
    the axes after), and every per-feature average is taken over Q, the contiguous axis, first,
    then over P: XLA's CPU code for an average of an elementwise expression over the input's own
    axes (such as the squared deviations) is several times slower than for these two steps, which
    make an NCHW training step some 25% faster (benchmarks/batchnorm.py)."""

    def view(t):
        dims = tf.shape(t)
        return tf.reshape(t, [tf.reduce_prod(dims[:axis]), dims[axis], tf.reduce_prod(dims[axis + 1:])])

    def average(t):
        return tf.reduce_mean(tf.reduce_mean(t, 2, keepdims=True), 0, keepdims=True)

    def per_feature(values):
        return tf.reshape(values, [1, -1, 1])

    @tf.function(jit_compile=True, reduce_retracing=True)
    def forward(x, gamma, beta):
        x32 = view(tf.cast(x, tf.float32))
        mean = average(x32)
        variance = average(tf.math.squared_difference(x32, mean))
        inverse = tf.math.rsqrt(variance + epsilon)
        scale = per_feature(gamma) * inverse
        y = x32 * scale + (per_feature(beta) - mean * scale)
        return tf.reshape(tf.cast(y, x.dtype), tf.shape(x)), tf.reshape(mean, [-1]), tf.reshape(variance, [-1]), inverse

    @tf.function(jit_compile=True, reduce_retracing=True)
    def backward(dy, x, gamma, mean, inverse):
        dy32 = view(tf.cast(dy, tf.float32))
        normalized = (view(tf.cast(x, tf.float32)) - per_feature(mean)) * inverse
        count = tf.cast(tf.size(dy32) // tf.size(mean), tf.float32)
        mean_dy = average(dy32)  # dbeta / count
        mean_dy_normalized = average(dy32 * normalized)  # dgamma / count
        dx = (per_feature(gamma) * inverse) * (dy32 - (mean_dy + normalized * mean_dy_normalized))
        return (tf.reshape(tf.cast(dx, dy.dtype), tf.shape(dy)), tf.reshape(mean_dy_normalized * count, [-1]),
                tf.reshape(mean_dy * count, [-1]))

    @tf.custom_gradient
    def batch_norm(x, gamma, beta):
        y, mean, variance, inverse = forward(x, gamma, beta)

        def gradient(dy, dmean, dvariance):  # the statistics only feed the moving averages
            return backward(dy, x, gamma, mean, inverse)

        return (y, mean, variance), gradient

    return batch_norm


@keras.saving.register_keras_serializable(package="nncards")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` plus Keras 2's fused kernel, ghost batches and adjustment.

    Args:
        fused: `None` takes the fastest exact route that can serve the layer (see `Kernel`:
            nncards' op on float32 and float16 inputs, else TensorFlow's fused kernel on
            channels-last ones and XLA on the others) and the composite ops otherwise; `True` requires the
            fused kernel on the input's layout (4-D or 5-D input normalized on its channel axis,
            float16/bfloat16/float32, no renorm, ghost batch, adjustment or synchronization; a
            `ValueError` when it cannot serve); `False` never leaves the composite ops. Every
            route gives the same outputs, gradients and moving statistics as the composite ops.
        virtual_batch_size: Ghost batch normalization: in training, the batch is split into
            `batch / virtual_batch_size` strided groups (group `j` holds samples `j, j + G, …`),
            each normalized with its own statistics; the moving statistics follow the group
            averages. The batch must be divisible by it in training.
        adjustment: `{"scale": [low, high], "bias": [low, high]}` (a key missing or None means
            no change): in
            training, the normalized values are multiplied by a per-feature uniform draw from
            `scale` and shifted by one from `bias`, before gamma and beta.
        axis: an integer, or (as in Keras 2) a list of distinct axes normalized together: every
            combination of indices along them is one feature, and the weights hold one value per
            feature, flat, in C order over the axes sorted. The layer then normalizes a view of
            the input whose last axis holds the features. Not with a mask.
        trainable_semantics: what `trainable=False` means: `"keras3"` inference mode; `"v1"` as
            Keras 2's V1 layer, weights and moving statistics frozen but a training call still
            normalizing with the batch's statistics.
        **kwargs: the arguments of `keras.layers.BatchNormalization`.
    """

    def __init__(self, axis=-1, fused=None, virtual_batch_size=None, adjustment=None,
                 trainable_semantics="keras3", **kwargs):
        axes = axes_of(axis)
        if not axes or any(isinstance(a, bool) or not isinstance(a, int) for a in axes):
            raise TypeError(f"axis must be an integer or a list of integers. Received: axis={axis!r}")
        if len(set(axes)) != len(axes):
            raise ValueError(f"axis must list distinct axes. Received: axis={axis!r}")
        if trainable_semantics not in TRAINABLE_SEMANTICS:
            raise ValueError(f"trainable_semantics must be one of {TRAINABLE_SEMANTICS}. "
                             f"Received: trainable_semantics={trainable_semantics!r}")
        # An axis list runs on a view whose last axis holds the features: Keras 3's code sees -1.
        super().__init__(axis=axes[0] if len(axes) == 1 else -1, **kwargs)
        self.axes = axes if len(axes) > 1 else None
        self.trainable_semantics = trainable_semantics
        if fused not in (None, True, False):
            raise ValueError(f"fused must be None, True or False. Received: fused={fused!r}")
        if virtual_batch_size is not None and (
                isinstance(virtual_batch_size, bool) or not isinstance(virtual_batch_size, int)
                or virtual_batch_size < 1):
            raise ValueError(f"virtual_batch_size must be a positive integer. "
                             f"Received: virtual_batch_size={virtual_batch_size!r}")
        if adjustment is not None:
            if not isinstance(adjustment, dict) or set(adjustment) - set(ADJUSTMENT_KEYS):
                raise ValueError(f"adjustment must be a dict with keys among {ADJUSTMENT_KEYS}. "
                                 f"Received: adjustment={adjustment!r}")
            adjustment = {key: list(_adjustment_range(key, value))
                          for key, value in adjustment.items() if value is not None}
        self.fused = fused
        self.virtual_batch_size = virtual_batch_size
        self.adjustment = adjustment
        self._raise_conflicts(self._options())
        self._adjustment_seed = keras.random.SeedGenerator() if adjustment is not None else None
        self._kernel = Kernel.COMPOSITE
        self._mask_seen = False
        self._compiled_training_seen = False

    def _options(self, masked: bool = False) -> Options:
        return Options(fused=self.fused, renorm=self.renorm, synchronized=self.synchronized,
                       virtual_batch_size=self.virtual_batch_size, adjustment=self.adjustment is not None,
                       dtype=self.compute_dtype, masked=masked, axis_list=self.axes is not None)

    @staticmethod
    def _raise_conflicts(options: Options, rank: int | None = None, axes: tuple[int, ...] | None = None) -> None:
        conflicts = options.conflicts(rank, axes)
        if conflicts:
            raise ValueError("; ".join(f"{c.message} (expected {c.port}: {c.expected})" for c in conflicts))

    @property
    def kernel(self) -> Kernel:
        """How the training step runs (known once built). A mask sends it to the composite ops;
        nncards' op gives way to its fallback (`op_fallback`) where it cannot be built, and in a
        step XLA compiles (XLA cannot compile it). Asking builds or loads the op if nothing did yet."""
        planned = self._planned_kernel
        if planned is Kernel.CUSTOM_OP and (self._compiled_training_seen or batch_norm_op.ops() is None):
            return self._op_fallback
        return planned

    @property
    def _planned_kernel(self) -> Kernel:
        """The kernel the rules chose, before nncards' op is asked for: an inference call (a
        validation's symbolic build among them) never builds the op."""
        return Kernel.COMPOSITE if self._mask_seen else self._kernel

    @property
    def fused_kernel(self) -> bool:
        """Whether training and inference run on TensorFlow's fused kernel."""
        return self.kernel in (Kernel.FUSED, Kernel.FUSED_VIEW)

    @property
    def _frozen(self) -> bool:
        """V1 semantics with `trainable=False`: training calls normalize, nothing updates."""
        return self.trainable_semantics == "v1" and not self.trainable

    def build(self, input_shape):
        rank = len(input_shape)
        axis = self.axes or self.axis
        outside = axes_out_of_range(axis, rank)
        if outside:
            raise ValueError(f"axis {outside[0]} is out of range for an input of rank {rank}. Received: axis={axis}")
        options = self._options()
        self._raise_conflicts(options, rank, normalized_axes(axis, rank))
        if self.axes is None:
            super().build(input_shape)
            self._kernel = options.kernel(rank, self.axis % rank)
            self._op_fallback = op_fallback(rank, self.axis % rank)
            return
        features = normalized_axes(self.axes, rank)
        reduced = [i for i in range(rank) if i not in features]
        order = reduced + list(features)
        self._view_order = order if order != list(range(rank)) else None
        self._view_features = math.prod(input_shape[i] for i in features)
        view_shape = (*(input_shape[i] for i in reduced), self._view_features)
        super().build(view_shape)
        self.input_spec = keras.layers.InputSpec(ndim=rank, axes={i: input_shape[i] for i in features})
        self._kernel = options.kernel(len(view_shape), len(view_shape) - 1)
        self._op_fallback = op_fallback(len(view_shape), len(view_shape) - 1)

    def get_config(self):
        return {**super().get_config(), "axis": self.axes or self.axis, "fused": self.fused,
                "virtual_batch_size": self.virtual_batch_size, "adjustment": self.adjustment,
                "trainable_semantics": self.trainable_semantics}

    # -- forward ----------------------------------------------------------------------------

    def call(self, inputs, training=None, mask=None):
        if mask is not None:
            self._raise_conflicts(self._options(masked=True))
            self._mask_seen = True
        if self.axes is None:
            return self._call_on(inputs, training, mask)
        view = tf.transpose(inputs, self._view_order) if self._view_order else inputs
        leading = tf.shape(view)[:len(inputs.shape) - len(self.axes)]
        outputs = self._call_on(tf.reshape(view, tf.concat([leading, [self._view_features]], 0)), training, None)
        outputs = tf.reshape(outputs, tf.shape(view))
        if self._view_order:
            outputs = tf.transpose(outputs, [self._view_order.index(i) for i in range(len(self._view_order))])
        return outputs

    def _call_on(self, inputs, training, mask):
        """The call on an input whose features lie along `self.axis`."""
        training = bool(training) and (self.trainable or self.trainable_semantics == "v1")
        kernel = self._planned_kernel
        if kernel is Kernel.CUSTOM_OP:
            if training and self.kernel is Kernel.CUSTOM_OP:
                if not GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()):
                    return self._custom_op_call(inputs)
                self._compiled_training_seen = True
            # Inference on the fallback (nncards' op has no inference form), and training where the op cannot serve
            kernel = self._op_fallback
        if kernel in (Kernel.FUSED, Kernel.FUSED_VIEW):
            return self._fused_call(inputs, training, kernel)
        if not training:
            return super().call(inputs, training=False, mask=mask)
        if kernel is Kernel.XLA:
            return self._xla_call(inputs)
        if self.virtual_batch_size is not None:
            return self._ghost_call(inputs)
        if self.adjustment is not None or self._frozen:
            return self._batch_call(inputs, mask)
        return super().call(inputs, training=True, mask=mask)

    @property
    def _statistics_dtype(self):
        """16-bit inputs are normalized in float32, as in Keras 2."""
        return tf.float32 if self.compute_dtype in ("float16", "bfloat16") else self.compute_dtype

    def _affine(self, dtype):
        size = self.moving_mean.shape[0]
        gamma = tf.cast(self.gamma, dtype) if self.scale else tf.ones((size,), dtype)
        beta = tf.cast(self.beta, dtype) if self.center else tf.zeros((size,), dtype)
        return gamma, beta

    def _fused_call(self, inputs, training, kernel: Kernel):
        # The kernel computes in float32 whatever its input type, and on CPU it does so about twice as
        # fast given float32 values as given 16-bit ones: 16-bit inputs are cast first (as accurate,
        # the output rounded to 16 bits once either way).
        inputs = tf.cast(tf.cast(inputs, self.compute_dtype), "float32")
        rank = len(inputs.shape)
        if kernel is Kernel.FUSED:
            view, data_format = inputs, FUSED_DATA_FORMATS[(rank, self.axis % rank)]
        else:  # every position of every sample is one more row of an NHWC batch: the same statistics
            view, data_format = tf.reshape(inputs, [-1, 1, 1, inputs.shape[-1]]), "NHWC"
        gamma, beta = self._affine("float32")
        if not training:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                view, gamma, beta, mean=tf.cast(self.moving_mean, "float32"),
                variance=tf.cast(self.moving_variance, "float32"),
                epsilon=self.epsilon, is_training=False, data_format=data_format)
        else:
            outputs, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
                view, gamma, beta, epsilon=self.epsilon, is_training=True, data_format=data_format)
            # The kernel reports the Bessel-corrected variance; the moving variance keeps the biased one.
            count = tf.cast(tf.size(view) // tf.size(mean), "float32")
            self._update_moving(mean, unbiased * tf.math.divide_no_nan(count - 1.0, count))
        outputs = outputs if view is inputs else tf.reshape(outputs, tf.shape(inputs))
        return tf.cast(outputs, self.compute_dtype)

    def _custom_op_call(self, inputs):
        gamma, beta = self._affine("float32")
        moving = self._moving_handles()
        outputs, mean, variance = batch_norm_op.ops().nncards_batch_norm_training(
            tf.cast(inputs, self.compute_dtype), gamma, beta, moving, epsilon=self.epsilon, axis=self.axis,
            momentum=self.momentum, batch_weight=1.0 - self.momentum)
        if not moving:
            self._update_moving(mean, variance)
        return outputs

    def _moving_handles(self) -> list:
        """The moving statistics' variable handles for nncards' op to update in place, or none
        where their assignments must go through Keras (frozen, a stateless scope, a distribution
        strategy's replicated variables) or they are not float32."""
        if self._frozen or in_stateless_scope() or tf.distribute.has_strategy():
            return []
        variables = (self.moving_mean, self.moving_variance)
        if any(v.dtype != "float32" for v in variables):
            return []
        return [v.handle for v in variables]

    def _xla_call(self, inputs):
        # XLA's code computes in float32 whatever the input type; 16-bit values are converted by
        # TensorFlow's casts around it instead of inside it, which measured 12-18% faster on CPU
        # (an NCHW mixed_float16 step), the output rounded to 16 bits once either way.
        inputs = tf.cast(tf.cast(inputs, self.compute_dtype), "float32")
        rank = len(inputs.shape)
        gamma, beta = self._affine("float32")
        outputs, mean, variance = _xla_batch_norm(rank, self.axis % rank, float(self.epsilon))(inputs, gamma, beta)
        self._update_moving(mean, variance)
        return tf.cast(outputs, self.compute_dtype)

    def _update_moving(self, mean, variance):
        if self._frozen:
            return
        for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
            moving.assign(moving * self.momentum + tf.cast(batch, moving.dtype) * (1.0 - self.momentum))

    def _renormalize(self, scale, offset, mean, variance, shape):
        """Fold the renorm corrections of these statistics into `(scale, offset)` and update."""
        r, d, _, _ = self._renorm_correction_and_moments(mean, variance)
        r, d = (tf.reshape(tf.stop_gradient(v), shape) for v in (r, d))
        if not self._frozen:
            self._update_renorm_statistics(mean, variance)
        return _compose(r, d, scale, offset)

    def _train_affine(self, mean, variance, scale, offset, shape):
        """Batch statistics of shape (C,) → the training output, updating the moving statistics."""
        if self.renorm:
            scale, offset = self._renormalize(scale, offset, mean, variance, shape)
        else:
            self._update_moving(mean, variance)
        return scale, offset

    def _ghost_call(self, inputs):
        x = tf.cast(inputs, self._statistics_dtype)
        rank = len(x.shape)
        batch = x.shape[0]
        if batch is not None and batch % self.virtual_batch_size:
            raise ValueError(f"virtual_batch_size={self.virtual_batch_size} must divide the training "
                             f"batch size. Received: a batch of {batch}")
        # Row-major reshape [B, …] → [V, B/V, …]: group j (axis 1) holds samples j, j + B/V, …
        dynamic = tf.shape(x)
        grouped = tf.reshape(x, tf.concat([[self.virtual_batch_size, -1], dynamic[1:]], 0))
        channel = self.axis % rank + 1
        axes = [i for i in range(rank + 1) if i not in (1, channel)]
        group_mean, group_variance = keras.ops.moments(grouped, axes, keepdims=True, synchronized=self.synchronized)
        shape = [1] * (rank + 1)
        shape[channel] = -1
        mean = tf.reshape(tf.reduce_mean(group_mean, axis=1), [-1])
        variance = tf.reshape(tf.reduce_mean(group_variance, axis=1), [-1])
        gamma, beta = self._affine(x.dtype)
        scale, offset = self._train_affine(mean, variance, tf.reshape(gamma, shape), tf.reshape(beta, shape), shape)
        outputs = tf.nn.batch_normalization(grouped, group_mean, group_variance, offset, scale, self.epsilon)
        return tf.cast(tf.reshape(outputs, dynamic), self.compute_dtype)

    def draw_adjustment(self, dtype):
        """One training step's per-feature `(scale, bias)`, each of shape (C,)."""
        size = self.moving_mean.shape[0]
        draws = []
        for key, neutral in (("scale", 1.0), ("bias", 0.0)):
            low, high = self.adjustment.get(key, (neutral, neutral))
            draws.append(keras.random.uniform((size,), low, high, dtype=dtype, seed=self._adjustment_seed))
        return tuple(draws)

    def _batch_call(self, inputs, mask):
        """Training with the batch's statistics (masked as Keras 3 masks), the adjustment's draws
        when one is set, and the moving statistics updated unless frozen."""
        x = tf.cast(inputs, self._statistics_dtype)
        rank = len(x.shape)
        shape = [1] * rank
        shape[self.axis % rank] = -1
        mean, variance = self._moments(x, mask)
        gamma, beta = self._affine(x.dtype)
        scale, offset = tf.reshape(gamma, shape), tf.reshape(beta, shape)
        if self.adjustment is not None:
            adjust_scale, adjust_bias = (tf.reshape(v, shape) for v in self.draw_adjustment(x.dtype))
            scale, offset = _compose(adjust_scale, adjust_bias, scale, offset)
        scale, offset = self._train_affine(mean, variance, scale, offset, shape)
        outputs = tf.nn.batch_normalization(x, tf.reshape(mean, shape), tf.reshape(variance, shape),
                                            offset, scale, self.epsilon)
        return tf.cast(outputs, self.compute_dtype)
