"""Statistics of the tensors inside a model, computed in one forward pass.

A probe model shares the run's layers and outputs the tensors of the inspected nodes; one
`tf.function` runs it and reduces every tensor to its statistics (per channel along the card's
feature axis, and a histogram), so only those small arrays ever leave TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nncards.build.model import BuiltModel
from nncards.contract.errors import NncardsError, Problem, json_safe
from nncards.contract.inspection import (HISTOGRAM_BINS, ChannelStatistics, Histogram, Inspection, NodeInspection,
                                         TensorStatistics)

TENSOR = "NeuralNetworkTensor"
BATCH_STATISTICS = ("batch_mean", "batch_variance")
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
        self.model = keras.Model(built.model.input, [p.tensor for p in self.probes], name="nncards_inspect")
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
        """The forward pass and the reductions as one TensorFlow function (traced once per mode)."""
        if training not in self._passes:
            import tensorflow as tf

            probes, model = self.probes, self.model

            @tf.function(reduce_retracing=True)
            def forward(inputs):
                tensors = model(inputs, training=training)
                tensors = tensors if isinstance(tensors, (list, tuple)) else [tensors]
                return [_statistics(t, p.axis) for t, p in zip(tensors, probes)]

            self._passes[training] = forward
        return self._passes[training]

    def inspect(self, inputs: dict[str, np.ndarray], training: bool, epoch: int | None = None) -> Inspection:
        results = self._pass(training)(inputs)
        nodes: dict[str, dict[str, Any]] = {n: {"outputs": {}} for n in self.nodes}
        for probe, found in zip(self.probes, results):
            found = {key: np.asarray(value) for key, value in found.items()}
            statistics = _as_model(found, probe.axis)
            if probe.port == "input":  # the tensor entering the card (no card has an output of that name)
                nodes[probe.node]["input"] = statistics
                nodes[probe.node].update({key: json_safe(found[key].tolist()) for key in BATCH_STATISTICS})
            else:
                nodes[probe.node]["outputs"][probe.port] = statistics
        for node in self.nodes:
            layer = self.built.layers.get(node)
            if layer is not None and self.built.cards[node].inspect_input:
                variables = {v.name: v for v in layer.layer.weights}
                nodes[node].update({name: json_safe(np.asarray(variables[name].numpy()).tolist())
                                    for name in LAYER_STATE if name in variables})
        return Inspection(epoch=epoch, training=training, nodes={n: NodeInspection(**facts) for n, facts in nodes.items()})


def _statistics(tensor, axis: int | None) -> dict[str, Any]:
    """Per-channel statistics, batch moments and a histogram of one tensor, as TensorFlow tensors."""
    import tensorflow as tf

    values = tf.cast(tensor, tf.float32)
    if axis is None:
        channels = tf.reshape(values, [-1, 1])
    else:
        channels = tf.reshape(tf.experimental.numpy.moveaxis(values, axis, -1), [-1, tf.shape(values)[axis]])
    finite = tf.math.is_finite(channels)
    count = tf.cast(tf.shape(channels)[0], tf.float32)
    finite_count = tf.reduce_sum(tf.cast(finite, tf.float32), axis=0)
    kept = tf.where(finite, channels, 0.0)
    mean = tf.math.divide_no_nan(tf.reduce_sum(kept, axis=0), finite_count)
    variance = tf.math.divide_no_nan(tf.reduce_sum(tf.where(finite, tf.square(channels - mean), 0.0), axis=0),
                                     finite_count)
    flat = tf.boolean_mask(channels, finite)
    empty = tf.equal(tf.size(flat), 0)
    low = tf.where(empty, 0.0, tf.reduce_min(tf.concat([flat, [np.inf]], 0)))
    high = tf.where(empty, 0.0, tf.reduce_max(tf.concat([flat, [-np.inf]], 0)))
    width = tf.where(high > low, high - low, 1.0)  # one value (or none): a unit-wide range
    return {
        "shape": tf.shape(tensor),
        "mean": mean, "std": tf.sqrt(variance),
        "min": tf.reduce_min(tf.where(finite, channels, np.inf), axis=0),
        "max": tf.reduce_max(tf.where(finite, channels, -np.inf), axis=0),
        "zeros": tf.reduce_sum(tf.cast(tf.equal(channels, 0.0), tf.float32), axis=0) / count,
        "nonfinite": (count - finite_count) / count,
        "edges": tf.linspace(low, low + width, HISTOGRAM_BINS + 1),
        "counts": tf.histogram_fixed_width(flat, tf.stack([low, low + width]), nbins=HISTOGRAM_BINS),
        "batch_mean": mean, "batch_variance": variance,
    }


def _as_model(found: dict[str, np.ndarray], axis: int | None) -> TensorStatistics:
    def listed(key):
        return json_safe(found[key].astype(float).tolist())

    channels = ChannelStatistics(mean=listed("mean"), std=listed("std"), min=listed("min"), max=listed("max"),
                                 zeros=found["zeros"].tolist(), nonfinite=found["nonfinite"].tolist())
    return TensorStatistics(shape=found["shape"].tolist(), axis=axis, channels=channels,
                            histogram=Histogram(edges=found["edges"].tolist(), counts=found["counts"].tolist()))
