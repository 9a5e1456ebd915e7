"""Statistics of the tensors inside a model, computed in one forward pass.

A probe model shares the run's layers and outputs the tensors of the inspected nodes; one
`tf.function` runs it, and one more reduces each tensor to its statistics (per channel along the
card's feature axis, and a histogram), so only those small arrays ever leave TensorFlow.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from nncards.build.model import BuiltModel
from nncards.contract.errors import NncardsError, Problem, json_safe
from nncards.contract.inspection import (HISTOGRAM_BINS, ChannelStatistics, Histogram, Inspection, NodeInspection,
                                         TensorStatistics)

TENSOR = "NeuralNetworkTensor"
CHANNEL_ROWS = ("mean", "variance", "std", "min", "max", "zeros", "nonfinite")
REDUCING_THREADS = min(4, os.cpu_count() or 1)
LAYER_STATE = ("moving_mean", "moving_variance", "gamma", "beta")  # a BN layer's, after the pass


@dataclass(frozen=True)
class Probe:
    """One inspected tensor: whose, which port, which symbolic tensor, its feature axis."""

    node: str
    port: str
    tensor: Any
    axis: int | None


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _axis(tensor: Any, axis: int | None) -> int | None:
    rank = len(tensor.shape)
    if axis is None or rank < 2:
        return None
    return axis % rank


class Inspector:
    """Inspects the chosen nodes of a built model (every tensor-producing node when `nodes` is None)."""

    def __init__(self, built: BuiltModel, nodes: list[str] | None):
        import keras

        known = [n for n, values in built.values.items() if self._tensor_ports(built, n, values)]
        unknown = sorted(set(nodes or []) - set(known))
        if unknown:
            message = f"{unknown[0]!r} is not a node of the graph that makes a tensor"
            raise NncardsError("run_failed", message, [Problem(
                code="param_invalid", node=unknown[0], port="nodes", received=unknown, expected=known,
                message=message)])
        self.built = built
        self.nodes = list(dict.fromkeys(nodes)) if nodes is not None else known
        self.probes = [probe for n in self.nodes for probe in self._probes(n)]
        # A tensor probed twice (a batch normalization's input is its feeder's output) is reduced once.
        self.reduced = list({(id(p.tensor), p.axis): p for p in self.probes}.values())
        self.reduced_index = {(id(p.tensor), p.axis): i for i, p in enumerate(self.reduced)}
        self.model = keras.Model(built.model.input, [p.tensor for p in self.reduced], name="nncards_inspect")
        self._passes: dict[bool, Any] = {}

    @staticmethod
    def _tensor_ports(built: BuiltModel, node: str, values: dict) -> list[str]:
        card = built.cards[node]
        return [p.id for p in card.outputs if p.type == TENSOR and _is_tensor(values.get(p.id))]

    def _probes(self, node: str) -> list[Probe]:
        card, params = self.built.cards[node], self.built.params[node]
        axis = card.feature_axis(params)
        probes = [Probe(node, port, self.built.values[node][port], axis)
                  for port in self._tensor_ports(self.built, node, self.built.values[node])]
        entering = self.built.sockets[node].get("input")
        if card.inspect_input and _is_tensor(entering):
            probes.append(Probe(node, "input", entering, axis))
        return [Probe(p.node, p.port, p.tensor, _axis(p.tensor, p.axis)) for p in probes]

    def _pass(self, training: bool):
        """The forward pass as one TensorFlow function (traced once per mode): each probed tensor
        comes out as a (values, channels) float32 matrix beside its shape, still inside TensorFlow."""
        if training not in self._passes:
            import tensorflow as tf

            probes, model = self.reduced, self.model

            @tf.function(reduce_retracing=True)
            def forward(inputs):
                tensors = model(inputs, training=training)
                tensors = tensors if isinstance(tensors, (list, tuple)) else [tensors]
                return [(_channels(t, p.axis), tf.shape(t)) for t, p in zip(tensors, probes)]

            self._passes[training] = forward
        return self._passes[training]

    def inspect(self, inputs: dict[str, np.ndarray], training: bool, epoch: int | None = None) -> Inspection:
        tensors = self._pass(training)(inputs)
        with ThreadPoolExecutor(REDUCING_THREADS) as pool:  # TensorFlow's kernels let go of the GIL
            reduced = list(pool.map(_reduce, tensors))
        nodes: dict[str, dict[str, Any]] = {n: {"outputs": {}} for n in self.nodes}
        for probe in self.probes:
            found = reduced[self.reduced_index[id(probe.tensor), probe.axis]]
            statistics = _as_model(found, probe.axis)
            if probe.port == "input":  # the tensor entering the card (no card has an output of that name)
                nodes[probe.node].update(input=statistics, batch_mean=_listed(found["mean"]),
                                         batch_variance=_listed(found["variance"]))
            else:
                nodes[probe.node]["outputs"][probe.port] = statistics
        for node in self.nodes:
            layer = self.built.layers.get(node)
            if layer is not None and self.built.cards[node].inspect_input:
                variables = {v.name: v for v in layer.layer.weights}
                nodes[node].update({name: _listed(np.asarray(variables[name].numpy()))
                                    for name in LAYER_STATE if name in variables})
        return Inspection(epoch=epoch, training=training, nodes={n: NodeInspection(**facts) for n, facts in nodes.items()})


def _reduce(pass_output) -> dict[str, np.ndarray]:
    """One probed tensor's statistics, as NumPy arrays by name."""
    channels, shape = pass_output
    rows, edges, counts = _statistics_function()(channels)
    return dict(zip(CHANNEL_ROWS, rows.numpy())) | {"edges": edges.numpy(), "counts": counts.numpy(),
                                                     "shape": shape.numpy()}


def _channels(tensor, axis: int | None):
    """The tensor as a float32 matrix with one column per channel of its feature axis."""
    import tensorflow as tf

    values = tf.cast(tensor, tf.float32)
    if axis is None:
        return tf.reshape(values, [-1, 1])
    if axis != len(tensor.shape) - 1:
        values = tf.experimental.numpy.moveaxis(values, axis, -1)
    return tf.reshape(values, [-1, tf.shape(values)[-1]])


@functools.cache
def _statistics_function():
    """Per-channel statistics, batch moments and a histogram of a (values, channels) matrix.

    One function with a fixed signature, traced once for every tensor of every model: tracing
    the reductions of a few hundred tensors into the forward pass took minutes.
    """
    import tensorflow as tf

    def summary(channels, mean, variance, minimum, maximum, counts_of):
        low, high = tf.reduce_min(minimum), tf.reduce_max(maximum)
        width = tf.where(high > low, high - low, 1.0)  # one value: a unit-wide range
        count = tf.cast(tf.shape(channels)[0], tf.float32)
        return {
            "mean": mean, "variance": variance, "std": tf.sqrt(variance), "min": minimum, "max": maximum,
            "zeros": tf.reduce_sum(tf.cast(tf.equal(channels, 0.0), tf.float32), axis=0) / count,
            "edges": tf.linspace(low, low + width, HISTOGRAM_BINS + 1), "counts": counts_of(low, width),
        }

    def all_finite(channels, total):
        mean = total / tf.cast(tf.shape(channels)[0], tf.float32)
        variance = tf.reduce_mean(tf.math.squared_difference(channels, mean), axis=0)
        found = summary(channels, mean, variance, tf.reduce_min(channels, axis=0), tf.reduce_max(channels, axis=0),
                        lambda low, width: tf.histogram_fixed_width(channels, tf.stack([low, low + width]),
                                                                    nbins=HISTOGRAM_BINS, dtype=tf.int64))
        return found | {"nonfinite": tf.zeros_like(mean)}

    def some_nonfinite(channels):
        """Non-finite values counted apart and left out of every other statistic."""
        finite = tf.math.is_finite(channels)
        finite_count = tf.reduce_sum(tf.cast(finite, tf.float32), axis=0)
        kept = tf.where(finite, channels, 0.0)
        mean = tf.math.divide_no_nan(tf.reduce_sum(kept, axis=0), finite_count)
        variance = tf.math.divide_no_nan(tf.reduce_sum(tf.where(finite, tf.square(channels - mean), 0.0), axis=0),
                                         finite_count)
        minimum = tf.reduce_min(tf.where(finite, channels, np.inf), axis=0)
        maximum = tf.reduce_max(tf.where(finite, channels, -np.inf), axis=0)
        empty = tf.equal(tf.reduce_sum(finite_count), 0.0)

        def counts_of(low, width):  # non-finite values binned past the last bin, then dropped
            bins = tf.clip_by_value(tf.cast(tf.floor((kept - low) / width * HISTOGRAM_BINS), tf.int32),
                                    0, HISTOGRAM_BINS - 1)
            bins = tf.reshape(tf.where(finite, bins, HISTOGRAM_BINS), [-1])
            return tf.math.bincount(bins, minlength=HISTOGRAM_BINS + 1, maxlength=HISTOGRAM_BINS + 1,
                                    dtype=tf.int64)[:HISTOGRAM_BINS]

        found = summary(channels, mean, variance, tf.where(empty, 0.0, minimum), tf.where(empty, 0.0, maximum),
                        counts_of)
        count = tf.cast(tf.shape(channels)[0], tf.float32)
        return found | {"min": minimum, "max": maximum, "nonfinite": (count - finite_count) / count}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def statistics(channels):
        # A NaN or an infinity makes its channel's sum non-finite (so may an overflow: the careful
        # path then gives the same numbers), which spares a pass over the tensor to look for them.
        total = tf.reduce_sum(channels, axis=0)
        finite = tf.reduce_all(tf.math.is_finite(total))
        found = tf.cond(finite, lambda: all_finite(channels, total), lambda: some_nonfinite(channels))
        # Three tensors, not ten: each costs a conversion to NumPy per tensor of the model.
        return tf.stack([found[row] for row in CHANNEL_ROWS]), found["edges"], found["counts"]

    return statistics


def _listed(values: np.ndarray) -> list:
    """The values as a JSON-ready list (non-finite ones spelled out, the rare case, element-wise)."""
    values = values.astype(float)
    return values.tolist() if np.isfinite(values).all() else json_safe(values.tolist())


def _as_model(found: dict[str, np.ndarray], axis: int | None) -> TensorStatistics:
    def listed(key):
        return _listed(found[key])

    channels = ChannelStatistics(mean=listed("mean"), std=listed("std"), min=listed("min"), max=listed("max"),
                                 zeros=found["zeros"].tolist(), nonfinite=found["nonfinite"].tolist())
    return TensorStatistics(shape=found["shape"].tolist(), axis=axis, channels=channels,
                            histogram=Histogram(edges=found["edges"].tolist(), counts=found["counts"].tolist()))
