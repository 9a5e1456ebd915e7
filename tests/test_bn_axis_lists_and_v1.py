"""Keras 2's axis lists and the V1 layer's `trainable`, with tf_keras as oracle.

An axis list normalizes every combination of indices along those axes as one feature; nncards'
layer must give tf_keras' outputs, gradients and moving statistics (its weights are the same
numbers, flat). `trainable_semantics="v1"` with `trainable=False` must give the numbers of
tf_keras' V1 class: a training call normalizes with the batch's statistics, nothing updates.
Also re-expressed here: tf.compat.v1's `test3DInputMultiAxis12`, `test5DInputMultiAxis123`,
`testGhostBN5DimsMultiAxis14` and `testMultiAxisInvalid`.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from tf_keras.src.layers.normalization.batch_normalization_v1 import BatchNormalization as KerasV1

import nncards
from graphs import bn_graph, edge, node
from nncards.layers.batch_normalization import BatchNormalization

RNG = np.random.default_rng(23)
TOL = {"rtol": 1e-5, "atol": 1e-5}


def data(*shape, mean=1.0, std=2.0):
    return tf.constant(RNG.normal(mean, std, size=shape).astype("float32"))


def training_step(layer, x, dy):
    """Output and gradients (input, gamma, beta) of one training call."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
    gamma, beta = (v.value if isinstance(v, keras.Variable) else v for v in (layer.gamma, layer.beta))
    return [y, *tape.gradient(y, [x, gamma, beta], output_gradients=dy)]


def assert_flat_close(ours, theirs, **tolerance):
    np.testing.assert_allclose(np.reshape(ours, -1), np.reshape(theirs, -1), **(tolerance or TOL))


@pytest.mark.parametrize("shape, axis, options", [
    ((4, 5, 3), [1, 2], {}),
    ((8, 5, 3), [2, 1], {"virtual_batch_size": 4}),
    ((4, 5, 3), [-1, 1], {"renorm": True, "renorm_clipping": {"rmax": 1.5, "rmin": 0.7, "dmax": 0.5}}),
    ((4, 3, 5, 2), [1, 3], {}),
    ((4, 3, 5, 2), [1, 2, 3], {}),
    ((8, 3, 5, 2), [1, 3], {"virtual_batch_size": 2, "renorm": True}),
    ((4, 2, 3, 3, 2), [1, 2, 3], {}),
    ((6, 3, 2, 2, 4), [1, 4], {"virtual_batch_size": 3}),
    ((4, 2, 3, 3, 2), [2, 4], {"renorm": True, "renorm_momentum": 0.5}),
], ids=["3d-12", "3d-21-ghost", "3d-renorm", "4d-13", "4d-123", "4d-13-ghost-renorm", "5d-123", "5d-14-ghost",
        "5d-24-renorm"])
def test_axis_lists_match_keras2(shape, axis, options):
    arguments = dict(axis=axis, momentum=0.5, **options)
    ours, theirs = BatchNormalization(**arguments), tf_keras.layers.BatchNormalization(**arguments)
    for step in range(2):
        x, dy = data(*shape) * (step + 1), data(*shape, mean=0.0, std=1.0)
        for mine, reference in zip(training_step(ours, x, dy), training_step(theirs, x, dy)):
            assert_flat_close(mine, reference)
    for name in ("moving_mean", "moving_variance"):
        assert_flat_close(getattr(ours, name).numpy(), getattr(theirs, name).numpy())
    assert_flat_close(ours(x), theirs(x, training=False))
    features = int(np.prod([shape[a] for a in axis]))
    assert {tuple(w.shape) for w in ours.weights} == {(features,)}  # one value per feature, flat


def test_axis_list_weights_and_config_round_trip():
    x = data(4, 3, 5, 2)
    layer = BatchNormalization(axis=[1, 3], momentum=0.5)
    layer(x, training=True)
    assert layer.get_config()["axis"] == [1, 3]
    restored = BatchNormalization.from_config(layer.get_config())
    restored.build(x.shape)
    restored.set_weights(layer.get_weights())
    np.testing.assert_allclose(restored(x), layer(x), **TOL)
    with pytest.raises(ValueError):  # the same features, nothing else
        layer(data(4, 3, 5, 3))


# -- tf.compat.v1's multi-axis cases, in our words ------------------------------------------------


@pytest.mark.parametrize("shape, axis, reduced", [((5, 4, 3), [1, 2], (0,)), ((5, 3, 4, 4, 3), [1, 2, 3], (0, 4))],
                         ids=["test3DInputMultiAxis12", "test5DInputMultiAxis123"])
def test_repeated_training_on_one_batch_converges_to_its_statistics(shape, axis, reduced):
    """100 training steps on one batch far from zero: every step's output is normalized, and the
    moving statistics reach the batch's (per feature, over the reduced axes); inference then
    normalizes too."""
    x = tf.constant(np.random.default_rng(0).random(shape).astype("float32") + 100)
    layer = BatchNormalization(axis=axis, epsilon=1e-3, momentum=0.9)
    for _ in range(100):
        y = layer(x, training=True).numpy()
        assert abs(y.mean()) < 0.05 and abs(y.std() - 1) < 0.05
    batch = x.numpy()
    assert_flat_close(layer.moving_mean.numpy(), batch.mean(axis=reduced), atol=1e-2, rtol=0)
    assert_flat_close(layer.moving_variance.numpy(), batch.var(axis=reduced), atol=1e-2, rtol=0)
    y = layer(x, training=False).numpy()
    assert abs(y.mean()) < 0.05 and abs(y.std() - 1) < 0.05


def test_ghost_batches_on_a_5d_axis_list():
    """testGhostBN5DimsMultiAxis14: strided ghost groups of 3 of a (6, 3, 10, 10, 4) batch
    normalized per (axis 1, axis 4) feature; the moving statistics follow the group averages."""
    shape, size, beta, gamma, momentum, epsilon = [6, 3, 10, 10, 4], 3, 2.0, 3.0, 0.8, 1e-3
    layer = BatchNormalization(axis=[1, 4], momentum=momentum, epsilon=epsilon, virtual_batch_size=size,
                               beta_initializer=keras.initializers.Constant(beta),
                               gamma_initializer=keras.initializers.Constant(gamma))
    moving_mean, moving_variance = np.zeros([1, 1, 3, 1, 1, 4]), np.ones([1, 1, 3, 1, 1, 4])
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = rng.random(shape)
        groups = x.reshape([size, shape[0] // size, *shape[1:]])
        means, variances = groups.mean(axis=(0, 3, 4), keepdims=True), groups.var(axis=(0, 3, 4), keepdims=True)
        moving_mean = moving_mean * momentum + means.mean(axis=1, keepdims=True) * (1 - momentum)
        moving_variance = moving_variance * momentum + variances.mean(axis=1, keepdims=True) * (1 - momentum)
        expected_train = ((groups - means) / np.sqrt(variances + epsilon) * gamma + beta).reshape(shape)
        expected_test = ((groups - moving_mean) / np.sqrt(moving_variance + epsilon) * gamma + beta).reshape(shape)
        x = tf.constant(x.astype("float32"))
        np.testing.assert_allclose(layer(x, training=True), expected_train, atol=1e-4)
        np.testing.assert_allclose(layer(x, training=False), expected_test, atol=1e-4)


@pytest.mark.parametrize("axis", [[1, 4], [-5, 1], [1, 2, 1]], ids=["beyond", "before", "duplicate"])
def test_invalid_axis_lists_are_refused(axis):
    """testMultiAxisInvalid: out-of-range and repeated axes, by the layer and by the card."""
    with pytest.raises(ValueError):
        BatchNormalization(axis=axis)(data(6, 5, 4, 3), training=True)
    errors = nncards.validate(bn_graph([5, 4, 3], {"axis": axis}))["errors"]
    code = "param_invalid" if axis == [1, 2, 1] else "param_out_of_range"
    assert [(e["code"], e["node"], e["port"]) for e in errors] == [(code, "bn", "axis")]


def test_axis_list_runs_through_the_card_and_refuses_a_mask_and_fused():
    x = RNG.normal(size=(8, 3, 5, 2)).astype("float32")
    result = nncards.run({"graph": bn_graph(x.shape[1:], {"axis": [1, 3], "momentum": 0.5}), "steps": [
        {"kind": "fit", "inputs": {"x": x.tolist()}, "targets": {"y": x.tolist()}, "batch_size": 4},
        {"kind": "call", "inputs": {"x": x.tolist()}, "training": True}]})
    assert result["status"] == "succeeded", result["error"]
    report = result["layers"]["bn"]
    assert report["config"]["axis"] == [1, 3] and len(report["weights"]["moving_mean"]) == 6
    gamma, beta = (np.reshape(report["weights"][name], (1, 3, 1, 2)) for name in ("gamma", "beta"))
    mean, variance = x.mean(axis=(0, 2), keepdims=True), x.var(axis=(0, 2), keepdims=True)
    np.testing.assert_allclose(result["steps"][1]["outputs"]["y"],
                               gamma * (x - mean) / np.sqrt(variance + 1e-3) + beta, atol=1e-4)
    errors = nncards.validate(bn_graph([3, 5, 2], {"axis": [1, 3], "fused": True}))["errors"]
    assert [(e["code"], e["port"]) for e in errors] == [("param_invalid", "fused")]
    masked = bn_graph([3, 5, 2], {"axis": [1, 3]}, extra_nodes=[node("m", "input", shape=[3, 5], dtype="bool")],
                      extra_edges=[edge("m", "output", "bn", "mask")])
    assert [(e["code"], e["port"]) for e in nncards.validate(masked)["errors"]] == [("param_invalid", "axis")]


# -- V1 semantics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, options", [
    ((8, 3), {}),
    ((8, 4, 4, 3), {}),  # the fused kernel
    ((8, 3, 4, 4), {"axis": 1}),  # nncards' op on planes
    ((8, 3), {"renorm": True}),
    ((8, 3), {"virtual_batch_size": 4}),
    ((8, 4, 3), {"axis": [1, 2]}),
], ids=["2d", "nhwc", "nchw", "renorm", "ghost", "axis-list"])
def test_v1_not_trainable_normalizes_with_batch_statistics_and_updates_nothing(shape, options):
    arguments = dict(momentum=0.5, trainable=False, **options)
    ours = BatchNormalization(trainable_semantics="v1", **arguments)
    theirs = KerasV1(**arguments)
    x = data(*shape)
    for layer in (ours, theirs):
        layer.build(x.shape)
        for name in ("moving_mean", "moving_variance", "gamma"):
            variable = getattr(layer, name)
            variable.assign(np.reshape(np.linspace(0.5, 2.0, int(np.prod(variable.shape))), variable.shape))
    before = {name: getattr(ours, name).numpy().copy() for name in ("moving_mean", "moving_variance")}
    assert_flat_close(ours(x, training=True), theirs(x, training=True))
    assert_flat_close(ours(x, training=False), theirs(x, training=False))
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(ours, name).numpy(), value)
        assert_flat_close(getattr(theirs, name).numpy(), value)
    assert ours.trainable_weights == [] and not np.allclose(ours(x, training=True), ours(x, training=False))


def test_v1_semantics_of_a_trainable_layer_are_keras3s():
    x = data(8, 3)
    ours, stock = BatchNormalization(trainable_semantics="v1", momentum=0.5), keras.layers.BatchNormalization(momentum=0.5)
    np.testing.assert_allclose(ours(x, training=True), stock(x, training=True), **TOL)
    np.testing.assert_allclose(ours.moving_mean.numpy(), stock.moving_mean.numpy(), **TOL)


def test_v1_semantics_through_a_fit():
    """A frozen V1 layer in a fit: gamma, beta and the moving statistics stay, and a training call
    differs from inference (Keras 3's frozen layer would be in inference mode)."""
    x = RNG.normal(2.0, 3.0, size=(16, 3)).astype("float32")
    steps = [{"kind": "fit", "inputs": {"x": x.tolist()}, "targets": {"y": x.tolist()}, "batch_size": 8},
             {"kind": "call", "inputs": {"x": x.tolist()}, "training": True},
             {"kind": "call", "inputs": {"x": x.tolist()}}]
    results = {semantics: nncards.run({"graph": bn_graph([3], {"trainable": False, "trainable_semantics": semantics}),
                                       "steps": steps}) for semantics in ("keras3", "v1")}
    for semantics, result in results.items():
        assert result["status"] == "succeeded", result["error"]
        weights = result["layers"]["bn"]["weights"]
        assert weights["moving_mean"] == [0.0] * 3 and weights["gamma"] == [1.0] * 3, semantics
    v1 = [np.asarray(s["outputs"]["y"]) for s in results["v1"]["steps"][1:]]
    np.testing.assert_allclose(v1[0], (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3), atol=1e-4)
    np.testing.assert_allclose(v1[1], x / np.sqrt(1 + 1e-3), atol=1e-4)
    keras3 = [np.asarray(s["outputs"]["y"]) for s in results["keras3"]["steps"][1:]]
    np.testing.assert_allclose(keras3[0], keras3[1], atol=1e-6)


@pytest.mark.parametrize("semantics", ["keras3", "v1"])
def test_training_call_of_a_frozen_layer_with_far_moving_statistics(semantics):
    """tf_keras' `test_batchnorm_trainable`, frozen: moving statistics 0.5 and 10² far from the
    batch's. A training call of a frozen V1 layer uses the batch's statistics; Keras 3's uses the
    moving ones. Prediction before and after a fit is the same either way (Keras' frozen-model
    test): nothing moves."""
    a = np.arange(10.0).reshape(10, 1)
    weights = {"bn": {"gamma": [1.0], "beta": [0.0], "moving_mean": [0.5], "moving_variance": [100.0]}}
    steps = [{"kind": "predict", "inputs": {"x": a.tolist()}},
             {"kind": "call", "inputs": {"x": a.tolist()}, "training": True},
             {"kind": "fit", "inputs": {"x": a.tolist()}, "targets": {"y": np.random.default_rng(0).random((10, 1)).tolist()},
              "batch_size": 10, "optimizer": {"name": "sgd", "learning_rate": 0.01}},
             {"kind": "predict", "inputs": {"x": a.tolist()}}]
    graph = bn_graph([1], {"trainable": False, "trainable_semantics": semantics})
    result = nncards.run({"graph": graph, "weights": weights, "steps": steps})
    assert result["status"] == "succeeded", result["error"]
    before, training, _, after = (np.asarray(s.get("outputs", {}).get("y", np.nan)) for s in result["steps"])
    expected = (a - a.mean()) / a.std() if semantics == "v1" else (a - 0.5) / 10
    np.testing.assert_allclose(training, expected, atol=1e-3)
    np.testing.assert_allclose(after, before, atol=1e-7)
    np.testing.assert_allclose(before, (a - 0.5) / np.sqrt(100 + 1e-3), atol=1e-6)
