"""nncards' C++ batch normalization op (layers/batch_norm_op.cc), on channels-last inputs of any
rank and on inputs normalized on another axis (NCHW: planes of one channel).

It must give the composite ops' numbers (stock Keras 3) forward, backward and in the moving
statistics, on shapes whose rows (planes) fill several of its chunks and end in a partial one,
with odd channel counts and planes that end in a partial tile; the same bits on one thread as on
several; and where it cannot be built (no compiler, a cache folder that cannot be made) the layer
runs on the fused kernel on a view (XLA for planes) and reports that route. Builds happen in child processes with a cache folder of their own: the op is
loaded once per process, and a build must not lean on a library left in the user's cache.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras
from nncards.layers import batch_norm_op
from nncards.layers.batch_normalization import BatchNormalization
from nncards.layers.bn_rules import Kernel

RNG = np.random.default_rng(17)
TOLERANCE = {"float32": {"rtol": 2e-5, "atol": 2e-5}, "mixed_float16": {"rtol": 1e-2, "atol": 1e-2}}


def data(*shape, mean=2.0, std=3.0):
    return RNG.normal(mean, std, size=shape).astype("float32")


STEP_NAMES = ("output", "dx", "dgamma", "dbeta", "moving_mean", "moving_variance")


def training_step(layer, x, loss_weights):
    """STEP_NAMES' arrays of one training step."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.cast(layer(x, training=True), "float32")
        loss = tf.reduce_sum(y * y * loss_weights)
    gradients = tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])
    return [y, *gradients, layer.moving_mean.numpy(), layer.moving_variance.numpy()]


# Rows per chunk: 64 kB of input, so 5,461 rows of 3 float32 channels (10,922 in float16) and
# 2,340 rows of 7; the shapes below end in a partial chunk and a partial group of 64 and of 4 rows.
# A float32 output of 4 MiB or more is streamed past the caches: 2d-streamed's rows of 2,100 bytes
# start and end inside 64-byte lines, nchw-streamed's planes of 36,012 bytes too. Planes are read
# in tiles of 4,096 float32 values (256 float16): nchw-tiles' planes end in a partial tile, and
# so do nchw-odd's, of 297 values, in float16. Planes of fewer than 64 values are read as rows of
# every channel's plane in turn (grouped rows), 16 rows a chunk at least: nchw-grouped's 100 rows
# of 1,024 values make 7 chunks, the last one of 4 rows; and in bands of whole planes, about 64 kB
# a chunk: nchw-bands' rows of 4,949 values make bands of 980 values (490 backward, 2,009 in
# float16), the last one partial, each of two chunks (16 rows and 4). Small planes in 16 rows or
# fewer are read channel by channel (channel blocks), in the same bands: 3d-axis1-tiny-planes and
# blocks-one-row in one band, blocks-bands' 700 channels in bands of 66 (33 backward, 133 in
# float16), the last one partial. Rows too wide for a chunk of 16 are cut into bands too: 2d-bands'
# 5,000 channels in 5 bands of 1,024 (the last one partial; 10 of 512 backward, 3 of 2,048 in
# float16), each of 18 chunks of 16 rows and one of 12; channels-last inputs of 128 rows or fewer
# are read a band of channels at a time, all its rows in one chunk (few rows): 2d-few-rows in 15
# bands of 1,365 channels (30 of 682 backward, 8 of 2,730 in float16), 2d-128-rows in 24 bands of
# 128 (the last one partial; 47 of 64 backward), 3d-one-channel in one.
@pytest.mark.parametrize("shape, axis", [
    ((1001, 7), -1), ((12001, 3), -1), ((64, 1024), -1), ((37, 5, 33), -1), ((3, 2003, 9), -1), ((2, 3, 1), -1),
    ((2001, 525), -1), ((2, 7, 33, 9), 1), ((3, 5, 4099), 1), ((2, 5, 3, 3001), 1), ((37, 5, 33), 1),
    ((16, 3, 2), 1), ((4, 9, 333, 3), 2), ((100, 64, 4, 4), 1), ((20, 101, 7, 7), 1), ((1, 37, 7, 7), 1),
    ((5, 700, 7, 7), 1), ((300, 5000), -1), ((12, 20000), -1), ((128, 3000), -1),
], ids=["2d-odd", "2d-chunks", "2d-wide", "3d-odd", "3d-chunks", "3d-one-channel", "2d-streamed", "nchw-odd",
        "nchw-tiles", "nchw-streamed", "3d-axis1-grouped", "3d-axis1-tiny-planes", "4d-axis2-grouped",
        "nchw-grouped", "nchw-bands", "blocks-one-row", "blocks-bands", "2d-bands", "2d-few-rows", "2d-128-rows"])
@pytest.mark.parametrize("dtype", ["float32", "mixed_float16"])
def test_the_op_gives_the_composite_ops_numbers(shape, axis, dtype):
    x = tf.constant(data(*shape))
    loss_weights = tf.constant(data(*shape, mean=0.0, std=1.0))  # every element weighs differently
    ours = BatchNormalization(axis=axis, momentum=0.5, dtype=dtype)
    results = []
    for layer in (ours, keras.layers.BatchNormalization(axis=axis, momentum=0.5, dtype=dtype)):
        layer.build(shape)
        layer.gamma.assign(np.linspace(0.5, 2.0, shape[axis]).astype("float32"))
        layer.beta.assign(np.linspace(-1.0, 1.0, shape[axis]).astype("float32"))
        results.append(training_step(layer, x, loss_weights))
    assert ours.kernel is Kernel.CUSTOM_OP
    for name, mine, reference in zip(STEP_NAMES, *results):
        scale = max(1.0, float(np.max(np.abs(reference))))  # sums over thousands of rows: relative to their size
        np.testing.assert_allclose(np.asarray(mine, "float32") / scale, np.asarray(reference, "float32") / scale,
                                   **TOLERANCE[dtype], err_msg=name)


@pytest.mark.parametrize("shape, axis", [((0, 5), -1), ((0, 3, 4, 4), 1), ((2, 3, 0), 1), ((2, 3, 0, 70), 1),
                                         ((4, 0, 70), 1), ((5, 0), -1)],
                         ids=["no-rows", "no-grouped-rows", "empty-groups", "no-planes", "no-channels",
                              "few-rows-no-channels"])
def test_an_empty_input_gets_keras_answers(shape, axis):
    """No values: an empty output and gradient, and statistics of none (NaN moving averages), as
    Keras computes them, whichever way the op reads the input."""
    results = []
    for layer in (BatchNormalization(axis=axis, momentum=0.5), keras.layers.BatchNormalization(axis=axis, momentum=0.5)):
        layer.build(shape)
        x = tf.zeros(shape)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        results.append([y, tape.gradient(y, x), layer.moving_mean.numpy(), layer.moving_variance.numpy()])
    for mine, reference in zip(*results):
        np.testing.assert_array_equal(mine, reference)


def test_layers_on_2d_3d_and_nchw_inputs_take_the_op_and_say_so():
    for shape, axis in (((16, 6), -1), ((4, 5, 6), -1), ((4, 5, 6, 6), 1)):
        layer = BatchNormalization(axis=axis)
        layer(data(*shape), training=True)
        assert layer.kernel is Kernel.CUSTOM_OP and not layer.fused_kernel
    masked = BatchNormalization()  # a mask: the composite ops
    masked(data(4, 5, 6), training=True, mask=np.ones((4, 5), bool))
    assert masked.kernel is Kernel.COMPOSITE


@pytest.mark.parametrize("shape, axis, kernel", [((64, 12), -1, Kernel.FUSED_VIEW), ((8, 6, 5, 5), 1, Kernel.XLA)],
                         ids=["channels-last-fused-view", "nchw-xla"])
def test_a_step_xla_compiles_takes_the_ops_fallback_and_says_so(shape, axis, kernel):
    layer = BatchNormalization(axis=axis, momentum=0.5)
    plain = keras.layers.BatchNormalization(axis=axis, momentum=0.5)
    x = data(*shape)
    outputs = [tf.function(lambda v, bn=bn: bn(v, training=True), jit_compile=True)(x) for bn in (layer, plain)]
    assert layer.kernel is kernel
    np.testing.assert_allclose(outputs[0], outputs[1], **TOLERANCE["float32"])
    np.testing.assert_allclose(layer.moving_variance.numpy(), plain.moving_variance.numpy(), **TOLERANCE["float32"])


# name → (shape, normalized axis, the axis sorted along: None for data far from zero)
ACCURACY_CASES = {"large-mean": ((100001, 8), 1, None), "sorted": ((300001, 4), 1, 0),
                  "planes-large-mean": ((3, 8, 40001), 1, None), "planes-sorted": ((4, 4, 80001), 1, 2),
                  "blocks-large-mean": ((16, 6, 63), 1, None), "blocks-sorted": ((16, 5, 50), 1, 2)}


@pytest.mark.parametrize("case", ACCURACY_CASES)
def test_the_statistics_are_as_accurate_as_two_passes(case):
    """Each chunk's (tile's) squared deviations from its own mean, shifted to the batch mean: on
    data far from zero, and on sorted data whose chunks' (tiles') means differ widely, the mean and
    variance stay within a few float32 roundings of the exact ones (E[x²] − E[x]² would be some 5%
    off on the first)."""
    rng = np.random.default_rng(3)
    shape, axis, sorted_along = ACCURACY_CASES[case]
    x = rng.normal(1000.0, 1.0, shape) if sorted_along is None else np.sort(rng.normal(0, 5, shape), sorted_along)
    x = x.astype("float32")
    reduced = tuple(i for i in range(x.ndim) if i != axis)
    exact = x.astype("float64")
    _, mean, variance = forward(tf.constant(x), tf.ones(x.shape[axis]), tf.zeros(x.shape[axis]), axis=axis)
    np.testing.assert_allclose(mean, exact.mean(reduced), rtol=2e-6, atol=2e-5)
    np.testing.assert_allclose(variance, exact.var(reduced), rtol=2e-6)


def forward(x, gamma, beta, moving=(), momentum=0.99, axis=-1):
    """nncards' forward op as the layer calls it."""
    return batch_norm_op.ops().nncards_batch_norm_training(x, gamma, beta, list(moving), epsilon=1e-3, axis=axis,
                                                           momentum=momentum, batch_weight=1.0 - momentum)


@pytest.mark.parametrize("momentum", [0.99, 0.5, 0.123])
@pytest.mark.parametrize("shape, axis", [((1001, 7), -1), ((3, 2003, 9), -1), ((3, 9, 2003), 1)],
                         ids=["2d", "3d", "planes"])
def test_the_op_updates_the_moving_statistics_as_keras_3_does(shape, axis, momentum):
    channels = shape[axis]
    x, gamma, beta = tf.constant(data(*shape)), tf.constant(data(channels)), tf.constant(data(channels))
    moving = [tf.Variable(data(channels)), tf.Variable(np.abs(data(channels)))]
    before = [v.read_value() for v in moving]  # held by a reader while the op updates the variable
    expected_y, mean, variance = forward(x, gamma, beta, momentum=momentum, axis=axis)
    expected = [old * momentum + batch * (1.0 - momentum) for old, batch in zip(before, (mean, variance))]
    outputs = forward(x, gamma, beta, [v.handle for v in moving], momentum, axis)
    for name, mine, reference in zip(("y", "mean", "variance", "moving_mean", "moving_variance"),
                                     (*outputs, *moving), (expected_y, mean, variance, *expected)):
        np.testing.assert_array_equal(mine, reference, err_msg=name)  # the same bits
    assert not np.array_equal(before[0], moving[0].numpy())  # the reader's value stayed the old one


def test_a_training_step_updates_the_moving_statistics_inside_the_op():
    layer = BatchNormalization(momentum=0.5)
    layer.build((64, 12))
    step = tf.function(lambda v: layer(v, training=True)).get_concrete_function(tf.TensorSpec((64, 12)))
    types = [op.type for op in step.graph.get_operations()]
    assert "NncardsBatchNormTraining" in types
    assert "AssignVariableOp" not in types and "ReadVariableOp" in types  # gamma and beta are read, nothing assigned


def test_in_a_stateless_scope_the_moving_statistics_go_through_keras():
    x = data(64, 12)
    layer, reference = BatchNormalization(momentum=0.5), BatchNormalization(momentum=0.5)
    for bn in (layer, reference):
        bn.build(x.shape)
    reference(x, training=True)
    initial = [v.numpy() for v in (layer.moving_mean, layer.moving_variance)]
    with keras.StatelessScope() as scope:
        layer(x, training=True)
    for variable, value, updated in zip((layer.moving_mean, layer.moving_variance), initial,
                                        (reference.moving_mean, reference.moving_variance)):
        np.testing.assert_array_equal(variable.numpy(), value)  # untouched
        np.testing.assert_array_equal(scope.get_current_value(variable), updated.numpy())


def test_inputs_of_the_wrong_size_are_refused_by_name():
    ops = batch_norm_op.ops()
    x, per_channel = tf.constant(data(8, 3)), tf.ones((3,))
    with pytest.raises(tf.errors.InvalidArgumentError, match="beta must have one value per channel: 4 for 3"):
        forward(x, per_channel, tf.ones((4,)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="gamma must have one value per channel: 3 for 8"):
        forward(x, per_channel, per_channel, axis=0)  # the channels along axis 0 of an (8, 3) x
    with pytest.raises(tf.errors.InvalidArgumentError, match="axis 2 is not an axis of x, of rank 2"):
        forward(x, per_channel, per_channel, axis=2)
    moving = tf.Variable(tf.zeros(3))
    with pytest.raises(tf.errors.InvalidArgumentError, match="moving must be empty or the moving mean's"):
        forward(x, per_channel, per_channel, [moving.handle])
    with pytest.raises(tf.errors.InvalidArgumentError, match="moving_variance must be an initialized float32 "
                                                             "variable of one value per channel"):
        forward(x, per_channel, per_channel, [moving.handle, tf.Variable(tf.zeros(4)).handle])
    with pytest.raises(tf.errors.InvalidArgumentError, match="dy and x must have the same shape"):
        ops.nncards_batch_norm_training_grad(tf.constant(data(7, 3)), x, per_channel, per_channel, per_channel,
                                             epsilon=1e-3)


# -- in child processes: thread counts, builds, fallbacks ----------------------------------------------

# Threads take at most 8 chunks of rows at once (128 Ki values), fewer near a pass's end: the
# channels-last shapes make 33 or 37 chunks forward in 13 takes and 66 or 74 backward in 17 or 18,
# the last chunk partial; the planes of 3,001 values, 23 chunks of 5 forward and 56 of 2 backward;
# the grouped rows of 144 values, 18 chunks of 113 rows forward and 36 of 56 backward; the grouped
# rows of 14,700 values, 15 bands of 3 chunks forward, 30 backward; the channel blocks of 12
# rows, 75 bands of 27 channels forward (154 of 13 backward), 6 a take; the 200 channels-last rows
# of 6,000 channels, 78 chunks of 16 rows (the last 8) and 1,024 channels forward (156 of 512
# backward), 8 a take; the 100 few rows of 30,000 channels, 185 bands of 163 forward (371 of 81
# backward), 8 a take: several threads share each pass. The last one is channels-last, whose
# layer's kernel the child reports.
CHILD_CASES = {"planes": ((16, 7, 3001), 1), "grouped": ((2001, 16, 3, 3), 1), "bands": ((40, 300, 7, 7), 1),
               "blocks": ((12, 2000, 7, 7), 1), "2d-bands": ((200, 6000), -1), "few-rows": ((100, 30000), -1),
               "2d": ((200001, 3), -1), "3d": ((9, 12001, 5), -1)}


def step_arrays(make_layer):
    """The arrays of a training step on each of CHILD_CASES (same data every time), and the last
    layer; make_layer(axis) makes a layer."""
    arrays = {}
    for case, (shape, axis) in CHILD_CASES.items():
        rng = np.random.default_rng(5)
        x = tf.constant(rng.normal(2.0, 3.0, shape).astype("float32"))
        layer = make_layer(axis)
        values = training_step(layer, x, tf.constant(rng.normal(size=shape).astype("float32")))
        arrays.update({f"{case}-{name}": np.asarray(value) for name, value in zip(STEP_NAMES, values)})
    return arrays, layer


def child(threads: str, prepare: str, out: str) -> None:
    """A child process's step on nncards' layer: its arrays saved to `out`, its kernel printed."""
    if int(threads):
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    if prepare == "prepare":  # as a server's run worker does when it starts
        batch_norm_op.prepare_in_background().join()
    arrays, layer = step_arrays(lambda axis: BatchNormalization(axis=axis, momentum=0.5))
    np.savez(out, **arrays)
    print(layer.kernel.value)


def run_child(tmp_path, name, threads=0, prepare=False, **environment):
    """`child` in a fresh process with these environment variables: its kernel and arrays."""
    out = tmp_path / f"{name}.npz"
    done = subprocess.run([sys.executable, __file__, str(threads), "prepare" if prepare else "-", str(out)],
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **environment},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()[-1], dict(np.load(out))


def test_a_first_use_builds_into_the_cache_and_later_processes_load_it(tmp_path):
    cache = tmp_path / "cache"
    kernel, built = run_child(tmp_path, "built", prepare=True, XDG_CACHE_HOME=str(cache))
    assert kernel == "custom_op"
    files = {p.name for p in (cache / "nncards" / "ops").iterdir()}
    [library] = [name for name in files if name.endswith(".so")]  # and no partial build beside it
    assert library.startswith("batch_norm_op-") and files == {library, library.removesuffix(".so") + ".lock"}
    # No compiler now: the op can only come from the cache.
    kernel, loaded = run_child(tmp_path, "loaded", XDG_CACHE_HOME=str(cache), CXX=str(tmp_path / "no-compiler"))
    assert kernel == "custom_op"
    for name in built:
        np.testing.assert_array_equal(loaded[name], built[name], err_msg=name)


def test_results_do_not_depend_on_the_number_of_threads(tmp_path):
    (kernel_one, one), (kernel_four, four) = (run_child(tmp_path, f"threads-{n}", threads=n) for n in (1, 4))
    assert kernel_one == kernel_four == "custom_op"
    for name in one:
        np.testing.assert_array_equal(four[name], one[name], err_msg=name)


@pytest.mark.parametrize("broken", ["no-compiler", "cache-folder-is-a-file"])
def test_without_the_op_the_layer_runs_on_the_fused_view_and_reports_it(tmp_path, broken):
    cache = tmp_path / "cache"
    if broken == "no-compiler":
        environment = {"XDG_CACHE_HOME": str(cache), "CXX": str(tmp_path / "no-compiler")}
    else:
        cache.write_text("a file where the cache folder should be")
        environment = {"XDG_CACHE_HOME": str(cache)}
    kernel, fallback = run_child(tmp_path, broken, **environment)
    assert kernel == "fused_view"
    assert not list(cache.glob("**/*.so"))  # nothing built, half-built or left behind
    reference, _ = step_arrays(lambda axis: keras.layers.BatchNormalization(axis=axis, momentum=0.5))
    for name in reference:
        scale = max(1.0, float(np.max(np.abs(reference[name]))))
        np.testing.assert_allclose(fallback[name] / scale, reference[name] / scale, **TOLERANCE["float32"],
                                   err_msg=name)


if __name__ == "__main__":
    child(*sys.argv[1:])
