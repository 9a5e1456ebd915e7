"""Batch normalization beyond Keras 3: nncards' layer and ops against Keras 2 (tf_keras) as oracle.

Ghost batches, adjustment (alone and with renorm) and `normalize_batch_in_training` must give
Keras 2's numbers within 1e-5; the fused kernel must give the numbers of the unfused path
(stock Keras 3), forward and backward, with the moving variance in Keras 3's biased convention.
"""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import keras
from nncards.layers.batch_normalization import BatchNormalization
from nncards.layers.bn_rules import Kernel
from nncards.ops import normalize_batch_in_training

RNG = np.random.default_rng(11)
TOL = {"rtol": 1e-5, "atol": 1e-5}


def data(*shape, mean=2.0, std=3.0):
    return RNG.normal(mean, std, size=shape).astype("float32")


def assert_moving_stats(ours, theirs):
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(getattr(ours, name).numpy(), np.reshape(getattr(theirs, name).numpy(), -1), **TOL)


# -- ghost batches ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape, axis", [((8, 3), -1), ((8, 4, 4, 3), 3), ((8, 3, 4, 4), 1)],
                         ids=["2d", "4d-axis3", "4d-axis1"])
def test_ghost_batches_match_keras2(shape, axis):
    arguments = dict(axis=axis, virtual_batch_size=4, momentum=0.5)
    ours, theirs = BatchNormalization(**arguments), tf_keras.layers.BatchNormalization(**arguments)
    for step in range(2):
        x = data(*shape) * (step + 1)
        np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True), **TOL)
    assert_moving_stats(ours, theirs)
    assert [tuple(w.shape) for w in ours.weights] == [(shape[axis],)] * 4  # Keras 3's layout
    odd_batch = data(3, *shape[1:])  # inference takes any batch size
    np.testing.assert_allclose(ours(odd_batch), theirs(odd_batch, training=False), **TOL)


def test_ghost_groups_are_strided_and_moving_variance_is_their_mean():
    x = data(8, 2)
    layer = BatchNormalization(virtual_batch_size=4, momentum=0.0)
    y = layer(x, training=True).numpy()
    groups = [x[j::2] for j in range(2)]  # G = 2 groups: samples {0,2,4,6} and {1,3,5,7}
    for j, group in enumerate(groups):
        np.testing.assert_allclose(y[j::2], (group - group.mean(0)) / np.sqrt(group.var(0) + 1e-3), **TOL)
    np.testing.assert_allclose(layer.moving_variance.numpy(), np.mean([g.var(0) for g in groups], axis=0), **TOL)


def test_ghost_batch_must_divide_the_training_batch():
    with pytest.raises(ValueError, match="virtual_batch_size=4 must divide"):
        BatchNormalization(virtual_batch_size=4)(data(6, 3), training=True)


# -- adjustment -------------------------------------------------------------------------------


@pytest.mark.parametrize("renorm", [False, True], ids=["plain", "renorm"])
def test_zero_width_adjustment_matches_keras2(renorm):
    arguments = dict(momentum=0.5, renorm=renorm, renorm_momentum=0.5,
                     renorm_clipping={"rmax": 1.2, "dmax": 0.5} if renorm else None)
    ours = BatchNormalization(adjustment={"scale": [1.5, 1.5], "bias": [0.25, 0.25]}, **arguments)
    theirs = tf_keras.layers.BatchNormalization(
        adjustment=lambda shape: (tf.fill([3], 1.5), tf.fill([3], 0.25)), **arguments)
    for step in range(2):
        x = data(16, 3) + step
        np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True), **TOL)
    assert_moving_stats(ours, theirs)
    np.testing.assert_allclose(ours(x), theirs(x, training=False), **TOL)  # inference: no adjustment


@pytest.mark.parametrize("renorm", [False, True], ids=["plain", "renorm"])
def test_injected_adjustment_draws_match_keras2(renorm):
    ours = BatchNormalization(adjustment={"scale": [0.5, 1.5], "bias": [-1.0, 1.0]}, renorm=renorm, momentum=0.5)
    draws = []
    draw = ours.draw_adjustment
    ours.draw_adjustment = lambda dtype: draws.append(draw(dtype)) or draws[-1]
    theirs = tf_keras.layers.BatchNormalization(adjustment=lambda shape: draws[-1], renorm=renorm, momentum=0.5)
    for step in range(2):
        x = data(16, 3) - step
        np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True), **TOL)
    assert_moving_stats(ours, theirs)
    assert not np.allclose(draws[0][0], draws[1][0])  # a fresh per-feature draw every step
    assert draws[0][0].shape == (3,) and 0.5 <= float(tf.reduce_min(draws[0][0]))


# -- normalize_batch_in_training --------------------------------------------------------------


@pytest.mark.parametrize("shape, axes, unbiased", [
    ((4, 3, 3, 2), (0, 1, 2), True),   # fused NHWC
    ((4, 2, 3, 3), [0, 2, 3], False),  # channels first on the CPU: broadcast
    ((2, 4, 3), (1, 0), False),        # every axis but the last, any order: regular
    ((2, 4, 3), [0, 2], False),        # anything else: broadcast
    ((4, 3, 3, 2), [1, 0, 2], False),  # not literally [0, 1, 2]: regular, not fused
], ids=["fused-nhwc", "nchw-broadcast", "regular", "broadcast", "regular-reordered"])
@pytest.mark.parametrize("affine", [True, False], ids=["gamma-beta", "none"])
def test_normalize_batch_in_training_matches_keras2(shape, axes, unbiased, affine):
    x = tf.constant(data(*shape))
    kept = [d for i, d in enumerate(shape) if i not in axes]
    gamma, beta = (tf.constant(data(*kept)), tf.constant(data(*kept))) if affine else (None, None)
    ours = normalize_batch_in_training(x, gamma, beta, axes)
    theirs = tf_keras.backend.normalize_batch_in_training(x, gamma, beta, axes)
    for mine, reference in zip(ours, theirs):
        np.testing.assert_allclose(mine, reference, **TOL)
    assert tuple(ours[2].shape) == tuple(kept)
    expected = np.var(x.numpy(), axis=tuple(axes), ddof=1 if unbiased else 0)
    np.testing.assert_allclose(ours[2], expected, **TOL)


# -- fused kernel -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape, axis, fused, kernel, dtype", [
    ((8, 5, 5, 4), 3, None, Kernel.CUSTOM_OP, "float32"),
    ((8, 5, 5, 4), 3, True, Kernel.FUSED, "float32"),
    ((8, 4, 5, 5), 1, True, Kernel.FUSED, "float32"),
    ((4, 3, 3, 3, 4), -1, None, Kernel.CUSTOM_OP, "float32"),
    ((4, 3, 3, 3, 4), -1, True, Kernel.FUSED, "float32"),
    ((16, 6), -1, None, Kernel.CUSTOM_OP, "float32"),
    ((4, 5, 6), -1, None, Kernel.CUSTOM_OP, "float32"),
    ((8, 4, 5, 5), 1, None, Kernel.CUSTOM_OP, "float32"),
    ((4, 3, 5), 1, None, Kernel.CUSTOM_OP, "float32"),
    ((2, 3, 2, 2, 4), 2, None, Kernel.CUSTOM_OP, "float32"),
    ((8, 5, 5, 4), 3, None, Kernel.CUSTOM_OP, "mixed_float16"),
    ((8, 5, 5, 4), 3, True, Kernel.FUSED, "mixed_float16"),
    ((16, 6), -1, None, Kernel.CUSTOM_OP, "mixed_float16"),
    ((8, 4, 5, 5), 1, None, Kernel.CUSTOM_OP, "mixed_float16"),
], ids=["nhwc-op", "nhwc-fused-true", "nchw-fused-true", "ndhwc-op", "ndhwc-fused-true", "2d-op", "3d-op",
        "nchw-op", "3d-axis1-op", "5d-axis2-op", "nhwc-op-mixed", "nhwc-fused-true-mixed", "2d-op-mixed",
        "nchw-op-mixed"])
def test_fast_kernels_equal_the_composite_ops(shape, axis, fused, kernel, dtype):
    x = tf.constant(data(*shape))
    ours = BatchNormalization(axis=axis, momentum=0.5, fused=fused, dtype=dtype)
    plain = keras.layers.BatchNormalization(axis=axis, momentum=0.5, dtype=dtype)
    weights = tf.constant(data(*shape, mean=0.0, std=1.0))  # a loss that weighs every element differently
    results = []
    for layer in (ours, plain):
        layer.build(shape)
        layer.gamma.assign(np.linspace(0.5, 2.0, shape[axis]).astype("float32"))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.cast(layer(x, training=True), "float32")
            loss = tf.reduce_sum(y * y * weights)
        gradients = tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])
        results.append([y, *gradients, layer.moving_mean.numpy(), layer.moving_variance.numpy(), layer(x)])
    assert ours.kernel is kernel
    tolerance = TOL if dtype == "float32" else {"rtol": 1e-2, "atol": 1e-2}
    for mine, reference in zip(*results):
        np.testing.assert_allclose(np.asarray(mine, "float32"), np.asarray(reference, "float32"), **tolerance)
    with tf.GradientTape() as tape:  # inference gradients: gamma / sqrt(v + eps)
        tape.watch(x)
        y = ours(x)
    np.testing.assert_allclose(tape.gradient(y, x)[(0,) * len(shape)],
                               (ours.gamma.numpy() / np.sqrt(ours.moving_variance.numpy() + 1e-3))[0], **tolerance)


def test_fused_moving_variance_is_biased_for_a_pair():
    layer = BatchNormalization(momentum=0.5, moving_variance_initializer="zeros", fused=True)
    layer(np.array([0.0, 2.0], "float32").reshape(2, 1, 1, 1), training=True)
    assert layer.fused_kernel
    np.testing.assert_allclose(layer.moving_variance.numpy(), [0.5])  # biased var 1, Keras 2 fused gave 1.0


def test_fused_none_falls_back_and_true_refuses_what_the_kernel_cannot_serve():
    fallback = BatchNormalization(renorm=True)
    fallback.build((None, 4, 4, 3))
    assert not fallback.fused_kernel
    with pytest.raises(ValueError, match="the fused kernel cannot serve renorm"):
        BatchNormalization(fused=True, renorm=True)
    with pytest.raises(ValueError, match="cannot serve axis 1 of a rank-2 input"):
        BatchNormalization(fused=True).build((None, 3))
    with pytest.raises(ValueError, match="virtual_batch_size and adjustment"):
        BatchNormalization(virtual_batch_size=2, adjustment={"scale": [1, 2]})


def test_weights_move_both_ways_and_config_round_trips():
    x = data(4, 3, 3, 2)
    ours = BatchNormalization(momentum=0.5, virtual_batch_size=2)
    ours(x, training=True)
    stock = keras.layers.BatchNormalization(momentum=0.5)
    stock.build(x.shape)
    stock.set_weights(ours.get_weights())
    np.testing.assert_allclose(stock(x), ours(x), **TOL)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(ours))
    assert type(restored) is BatchNormalization and restored.virtual_batch_size == 2
    restored.set_weights(stock.get_weights())
    np.testing.assert_allclose(restored(x), ours(x), **TOL)
