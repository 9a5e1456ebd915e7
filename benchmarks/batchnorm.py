"""Benchmark: a batch normalization training step, the card's layer against four baselines.

A training step is the forward pass in training mode (batch statistics, moving-average updates)
and the backward pass to the input, gamma and beta, given the output's gradient. It is timed for
four layouts (2-D, 3-D and NHWC inputs normalized on the last axis, the 2-D one also with rows
of 16,384 channels; NCHW on axis 1, also with small planes of 7 x 7, as a network's last blocks
have them, in a batch of 128 and in one of 8) in float32
and under the `mixed_float16` policy (16-bit input and gradient, float32 variables), as the
median of repeats after a warm-up. Steps run as a training loop runs them, back to back: each
repeat runs every step in turn for a short block (one untimed call, then BLOCK timed ones), so
that load hits them alike while none pays for the caches and threads another left behind.
Everything runs in this process except Keras on JAX, which runs in a child process started with
`KERAS_BACKEND=jax` (a process has one Keras backend): in each repeat this process asks it for
its block after its own, and the child times it and answers.

- card: the layer the batch normalization card builds for that input, in a `tf.function`, and
  in a `tf.function(jit_compile=True)` as a run's `"jit_compile": true` steps compile it;
- Keras 3: stock `keras.layers.BatchNormalization`, in a `tf.function`;
- tf_keras: Keras 2's layer as it configures itself (its fused kernel on 4-D inputs), in a
  `tf.function`;
- XLA: the stock Keras 3 step in a `tf.function(jit_compile=True)`;
- JAX: the stock Keras 3 layer on the JAX backend, its `stateless_call` and `jax.vjp` in one
  `jax.jit`.

Every step returns its output with the gradients: in a model the output feeds the next layer,
and a step that dropped it would let a compiled or pruned baseline skip computing and writing it
(the backward pass needs the input, the statistics and the output's gradient, not the output).
Note that every step is given its output gradient as a constant, so a step compiled whole (XLA,
JAX) may fuse the backward reductions into the forward pass, which no layer inside a larger
model can. The last lines print, per layout, the card's time over the fastest baseline's (≤ 1:
the card is at least as fast), for the plain step and for the step under `jit_compile`.

    python benchmarks/batchnorm.py [--repeats 20] [--layouts 2d 2dwide 3d nhwc nchw nchw7 nchw7b8]
                                   [--policies float32 mixed_float16]

Needs the `bench` extra (`pip install -e '.[bench]'`) for JAX; without it the JAX column is empty.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

LAYOUTS = {  # name → (input shape, batch included; normalized axis)
    "2d": ((512, 1024), -1),
    "2dwide": ((64, 16384), -1),
    "3d": ((64, 128, 256), -1),
    "nhwc": ((128, 32, 32, 64), -1),
    "nchw": ((64, 64, 64, 32), 1),
    "nchw7": ((128, 512, 7, 7), 1),
    "nchw7b8": ((8, 2048, 7, 7), 1),
}
POLICIES = ("float32", "mixed_float16")
BASELINES = ("Keras 3", "tf_keras", "XLA", "JAX")


def arrays(layout: str, policy: str):
    """The input and the output gradient of a layout, in the policy's compute type."""
    shape, _ = LAYOUTS[layout]
    rng = np.random.default_rng(0)
    dtype = "float16" if policy == "mixed_float16" else "float32"
    return rng.normal(1.0, 2.0, size=shape).astype(dtype), rng.normal(size=shape).astype(dtype)


BLOCK = 5


def timed(step):
    """The step as a block: a function of n running it n + 1 times and returning the seconds of
    the last n calls."""
    def block(n):
        step()
        seconds = []
        for _ in range(n):
            start = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - start)
        return seconds

    return block


def medians(blocks: dict, repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds of each step, given as a block (see `timed`), the blocks taking turns."""
    for block in blocks.values():
        block(warmup)
    times = {name: [] for name in blocks}
    for _ in range(repeats):
        for name, block in blocks.items():
            times[name] += block(BLOCK)
    return {name: statistics.median(t) for name, t in times.items()}


# -- JAX, in a child process ----------------------------------------------------------------


def jax_child() -> None:
    """Serves its parent on stdin/stdout, a JSON line each way: `{"layout", "policy"}` builds and
    compiles that step (answer: true), `{"run": n}` runs it as a block of n (answer: the seconds
    of each timed call)."""
    import jax
    import keras

    run = None
    for line in sys.stdin:
        request = json.loads(line)
        if "run" in request:
            answer = run(request["run"])
        else:
            shape, axis = LAYOUTS[request["layout"]]
            x, dy = (jax.numpy.asarray(a) for a in arrays(request["layout"], request["policy"]))
            layer = keras.layers.BatchNormalization(axis=axis, dtype=request["policy"])
            layer.build(shape)
            trainable = [v.value for v in layer.trainable_variables]
            moving = [v.value for v in layer.non_trainable_variables]

            @jax.jit
            def step(trainable, moving, x, dy, layer=layer):
                def forward(trainable, x):
                    return layer.stateless_call(trainable, moving, x, training=True)

                y, backward, new_moving = jax.vjp(forward, trainable, x, has_aux=True)
                return y, backward(dy), new_moving

            run = timed(lambda step=step, trainable=trainable, moving=moving, x=x, dy=dy:
                        jax.block_until_ready(step(trainable, moving, x, dy)))
            run(1)
            answer = True
        print(json.dumps(answer), flush=True)


class JaxBaseline:
    """Keras on JAX in a child process; `step(layout, policy)` is the child's step as a block
    (see `timed`), or None when JAX is not installed."""

    def __init__(self):
        self.errors = tempfile.TemporaryFile("w+")  # a file, not a pipe: the child never waits on it
        self.child = subprocess.Popen([sys.executable, __file__, "--jax-child"], text=True,
                                      env={**os.environ, "KERAS_BACKEND": "jax"},
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors)

    def _ask(self, request):
        self.child.stdin.write(json.dumps(request) + "\n")
        self.child.stdin.flush()
        answer = self.child.stdout.readline()
        if not answer:
            self.child.wait()
            self.errors.seek(0)
            raise EOFError(self.errors.read().strip().splitlines()[-1:])
        return json.loads(answer)

    def step(self, layout: str, policy: str):
        if self.child.poll() is not None:
            return None
        try:
            self._ask({"layout": layout, "policy": policy})
        except EOFError as error:
            print(f"JAX baseline unavailable: {error}", file=sys.stderr)
            return None
        return lambda n: self._ask({"run": n})

    def close(self):
        if self.child.poll() is None:
            self.child.stdin.close()
            self.child.wait()
        self.errors.close()


# -- TensorFlow, in this process ------------------------------------------------------------


def card_layer(layout: str, policy: str):
    """The layer the batch normalization card builds for this input."""
    import nncards

    shape, axis = LAYOUTS[layout]
    graph = {"schema_version": 1, "nodes": [
        {"id": "x", "card": "input", "params": {"shape": list(shape[1:])}},
        {"id": "bn", "card": "layer_BatchNormalization", "params": {"axis": axis, "dtype": policy}},
        {"id": "y", "card": "output", "params": {}},
    ], "edges": [
        {"source": "x", "source_port": "output", "target": "bn", "target_port": "input"},
        {"source": "bn", "source_port": "output", "target": "y", "target_port": "input"},
    ]}
    return nncards.build_model(graph).get_layer("bn")


def training_step(layer, variables, x, dy, jit_compile=False):
    import tensorflow as tf

    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        return y, tape.gradient(y, [x, *variables], output_gradients=dy)

    # Reading a value waits for the step to finish: gamma's gradient as a NumPy array (indexing an
    # output instead would add an eager op, some 0.3 ms here, that no training step runs).
    return lambda: step()[1][1].numpy()


def tensorflow_medians(layout: str, policy: str, repeats: int, jax: JaxBaseline) -> tuple[dict[str, float], str]:
    import keras
    import tensorflow as tf
    import tf_keras

    shape, axis = LAYOUTS[layout]
    x, dy = (tf.constant(a) for a in arrays(layout, policy))
    card = card_layer(layout, policy)
    stock = keras.layers.BatchNormalization(axis=axis, dtype=policy)
    stock.build(shape)
    keras2 = tf_keras.layers.BatchNormalization(axis=axis, dtype=policy)
    keras2.build(shape)

    def stock_variables(layer):
        return [layer.gamma.value, layer.beta.value]

    steps = {
        "card": training_step(card, stock_variables(card), x, dy),
        "card XLA": training_step(card, stock_variables(card), x, dy, jit_compile=True),
        "Keras 3": training_step(stock, stock_variables(stock), x, dy),
        "tf_keras": training_step(keras2, [keras2.gamma, keras2.beta], x, dy),
        "XLA": training_step(stock, stock_variables(stock), x, dy, jit_compile=True),
    }
    steps = {name: timed(step) for name, step in steps.items()}
    jax_step = jax.step(layout, policy)
    if jax_step is not None:
        steps["JAX"] = jax_step
    kernel = getattr(card, "kernel", "composite")
    times = medians(steps, repeats)
    times.setdefault("JAX", None)
    return times, f"{kernel}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS))
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--jax-child", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.jax_child:
        jax_child()
        return

    jax = JaxBaseline()
    rows = []
    try:
        for layout in arguments.layouts:
            for policy in arguments.policies:
                times, kernel = tensorflow_medians(layout, policy, arguments.repeats, jax)
                rows.append((layout, policy, kernel, times))
    finally:
        jax.close()

    print(f"median ms of a training step, {arguments.repeats} repeats of {BLOCK} after warm-up")
    print(f"{'layout':7} {'policy':14} {'card kernel':12} {'card':>8} {'card XLA':>9}"
          + "".join(f"{b:>10}" for b in BASELINES))
    for layout, policy, kernel, times in rows:
        cells = "".join(f"{times[b] * 1e3:10.2f}" if times[b] is not None else f"{'-':>10}" for b in BASELINES)
        print(f"{layout:7} {policy:14} {kernel:12} {times['card'] * 1e3:8.2f} {times['card XLA'] * 1e3:9.2f}{cells}")
    print("card / fastest baseline, plain step and under jit_compile (<= 1: at least as fast):")
    for layout, policy, kernel, times in rows:
        fastest = min((b for b in BASELINES if times[b] is not None), key=lambda b: times[b])
        print(f"  {layout} {policy}: {times['card'] / times[fastest]:.2f}, jit_compile "
              f"{times['card XLA'] / times[fastest]:.2f} (fastest baseline: {fastest})")


if __name__ == "__main__":
    main()
