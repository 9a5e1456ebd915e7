"""Benchmark: a batch normalization training step, the card's layer against stock Keras 3.

A training step is the forward pass in training mode (batch statistics, moving-average updates)
and the backward pass to the input, gamma and beta, for a (128, 32, 32, 64) float32 NHWC batch,
compiled with `tf.function`, timed after a warm-up as the median of repeats. Both layers run in
the same process on the same data. The copy bound: a step must at least read x and write y
forward, and read x and dy and write dx backward, 5 tensor passes; its effective bandwidth is
5 × bytes / time, compared with a NumPy copy of the tensor (2 × bytes / time).

    python benchmarks/batchnorm.py [--repeats 20]
"""

import argparse
import statistics
import time

import numpy as np

SHAPE = (128, 32, 32, 64)
PASSES = 5  # x and y forward; x, dy and dx backward


def median_seconds(function, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def card_layer():
    """The layer the batch normalization card builds for this input with default parameters."""
    import nncards

    graph = {"schema_version": 1, "nodes": [
        {"id": "x", "card": "input", "params": {"shape": list(SHAPE[1:])}},
        {"id": "bn", "card": "layer_BatchNormalization", "params": {}},
        {"id": "y", "card": "output", "params": {}},
    ], "edges": [
        {"source": "x", "source_port": "output", "target": "bn", "target_port": "input"},
        {"source": "bn", "source_port": "output", "target": "y", "target_port": "input"},
    ]}
    return nncards.build_model(graph).get_layer("bn")


def training_step(layer, x, dy):
    import tensorflow as tf

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        return tape.gradient(y, [x, layer.gamma.value, layer.beta.value], output_gradients=dy)

    return lambda: float(step()[1][0])  # reading a value waits for the step to finish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    repeats = parser.parse_args().repeats

    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x_np = rng.normal(1.0, 2.0, size=SHAPE).astype("float32")
    x, dy = tf.constant(x_np), tf.constant(rng.normal(size=SHAPE).astype("float32"))
    ours = card_layer()
    stock = keras.layers.BatchNormalization()
    stock.build(SHAPE)
    ours_time = median_seconds(training_step(ours, x, dy), repeats)
    stock_time = median_seconds(training_step(stock, x, dy), repeats)
    target = np.empty_like(x_np)
    copy_time = median_seconds(lambda: np.copyto(target, x_np), repeats)

    gigabytes = x_np.nbytes / 1e9
    copy_bandwidth = 2 * gigabytes / copy_time
    ours_bandwidth = PASSES * gigabytes / ours_time
    print(f"input {SHAPE} float32, {x_np.nbytes / 2**20:.0f} MiB; median of {repeats} after warm-up")
    print(f"card layer ({type(ours).__module__}, fused kernel {ours.fused_kernel}): {ours_time * 1e3:.1f} ms/step")
    print(f"stock keras.layers.BatchNormalization: {stock_time * 1e3:.1f} ms/step")
    print(f"speed-up over stock Keras 3: {stock_time / ours_time:.2f}x")
    print(f"NumPy copy: {copy_time * 1e3:.1f} ms, {copy_bandwidth:.1f} GB/s")
    print(f"card layer effective bandwidth ({PASSES} passes): {ours_bandwidth:.1f} GB/s, "
          f"{copy_bandwidth / ours_bandwidth:.2f}x below the copy bound")


if __name__ == "__main__":
    main()
