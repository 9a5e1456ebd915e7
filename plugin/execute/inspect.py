"""Statistics of the tensors inside a model, computed in one forward pass.

A probe model shares the run's layers and outputs the tensors of the inspected nodes, each as a
(values, channels) matrix along the card's feature axis; one `tf.function` runs it, and
`column_statistics` reduces each matrix in place (a view of TensorFlow's buffer, never copied
nor sent) to per-channel statistics and a histogram: only those small arrays leave the worker.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from nncards.build.model import BuiltModel
from nncards.contract.errors import NncardsError, Problem, json_safe
from nncards.contract.inspection import (ChannelStatistics, Histogram, Inspection, NodeInspection,
                                         TensorStatistics)

TENSOR = "NeuralNetworkTensor"
REDUCING_THREADS = os.cpu_count() or 1
LAYER_STATE = ("moving_mean", "moving_variance", "gamma", "beta")  # a BN layer's, after the pass


@dataclass(frozen=True)
class Probe:
    """One inspected tensor: whose, which port, which symbolic tensor, its feature axis."""

    node: str
    port: str
    tensor: Any
    axis: int | None

    @property
    def reduction(self) -> tuple[int, int | None]:
        """Probes of the same tensor along the same axis share one reduction."""
        return id(self.tensor), self.axis


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
        self.reduced = list({p.reduction: p for p in self.probes}.values())
        self.reduced_index = {p.reduction: i for i, p in enumerate(self.reduced)}
        self.model = keras.Model(built.model.input, [p.tensor for p in self.reduced], name="nncards_inspect")
        self.layer_state = {node: {v.name: v for v in built.layers[node].layer.weights if v.name in LAYER_STATE}
                            for node in self.nodes if node in built.layers and built.cards[node].inspect_input}
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
        comes out as a (values, channels) float32 matrix beside its shape, still inside TensorFlow,
        and the layer state after the pass (read in the same call: one read per variable was slow)."""
        if training not in self._passes:
            import tensorflow as tf

            probes, model, layer_state = self.reduced, self.model, self.layer_state

            @tf.function(reduce_retracing=True)
            def forward(inputs):
                tensors = model(inputs, training=training)
                tensors = tensors if isinstance(tensors, (list, tuple)) else [tensors]
                state = {node: {name: tf.identity(v.value) for name, v in variables.items()}
                         for node, variables in layer_state.items()}
                return [(_channels(t, p.axis), tf.shape(t)) for t, p in zip(tensors, probes)], state

            self._passes[training] = forward
        return self._passes[training]

    def inspect(self, inputs: dict[str, np.ndarray], training: bool, epoch: int | None = None) -> Inspection:
        matrices, state = self._pass(training)(inputs)
        with ThreadPoolExecutor(REDUCING_THREADS) as pool:  # the kernels let go of the GIL
            reduced = list(pool.map(_reduce, matrices, [p.axis for p in self.reduced]))
        nodes: dict[str, dict[str, Any]] = {n: {"outputs": {}} for n in self.nodes}
        for probe in self.probes:
            found, statistics = reduced[self.reduced_index[probe.reduction]]
            if probe.port == "input":  # the tensor entering the card (no card has an output of that name)
                nodes[probe.node].update(input=statistics, batch_mean=_listed(found["mean"]),
                                         batch_variance=_listed(found["variance"]))
            else:
                nodes[probe.node]["outputs"][probe.port] = statistics
        for node, variables in state.items():
            nodes[node].update({name: _listed(value.numpy()) for name, value in variables.items()})
        return Inspection(epoch=epoch, training=training, nodes={n: NodeInspection(**facts) for n, facts in nodes.items()})


def _reduce(pass_output, axis: int | None) -> tuple[dict[str, np.ndarray], TensorStatistics]:
    """One probed tensor's statistics, as arrays and as the contract's model (built in the
    reducing thread, beside the other thread's kernel)."""
    from nncards.execute.column_statistics import column_statistics  # Numba: 0.3 s, only for a run that inspects

    channels, shape = pass_output
    # np.asarray views TensorFlow's buffer; EagerTensor.numpy() copies it (160 ms of DenseNet121's 65M values)
    found = column_statistics(np.asarray(channels)) | {"shape": np.asarray(shape)}
    return found, _as_model(found, axis)


def _channels(tensor, axis: int | None):
    """The tensor as a float32 matrix with one column per channel of its feature axis."""
    import tensorflow as tf

    values = tf.cast(tensor, tf.float32)
    if axis is None:
        return tf.reshape(values, [-1, 1])
    if axis != len(tensor.shape) - 1:
        values = tf.experimental.numpy.moveaxis(values, axis, -1)
    return tf.reshape(values, [-1, tf.shape(values)[-1]])


def _listed(values: np.ndarray) -> list:
    """The values as a JSON-ready list (non-finite ones spelled out, the rare case, element-wise)."""
    values = values.astype(float)
    return values.tolist() if np.isfinite(values).all() else json_safe(values.tolist())


def _as_model(found: dict[str, np.ndarray], axis: int | None) -> TensorStatistics:
    """The contract's model of the statistics, built without validation: every field is a list
    this module just made, of the right type (validation would walk every number of a network's
    per-channel lists again)."""
    def listed(key):  # float64 arrays: only a channel without finite values can hold an infinity
        return found[key].tolist() if found["all_finite"] else _listed(found[key])

    channels = ChannelStatistics.model_construct(
        mean=listed("mean"), std=listed("std"), min=listed("min"), max=listed("max"),
        zeros=found["zeros"].tolist(), nonfinite=found["nonfinite"].tolist())
    histogram = Histogram.model_construct(edges=found["edges"].tolist(), counts=found["counts"].tolist())
    return TensorStatistics.model_construct(shape=found["shape"].tolist(), axis=axis, channels=channels,
                                            histogram=histogram)
