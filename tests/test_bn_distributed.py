"""Batch normalization under a mirrored strategy on 2 logical CPU devices, through `nncards.run`.

A distributed run executes in its own worker process. One graph holds a synchronized and an
unsynchronized layer side by side; a `fit` of one batch of 8 splits it into two replicas of 4
whose halves have very different statistics. With momentum 0 the moving statistics are those of
the batch statistics used, so they show which ones each layer normalized with.
"""

import numpy as np
import pytest

import nncards
from graphs import bn_graph, edge, node

X = np.concatenate([np.random.default_rng(0).normal(0.0, 1.0, (4, 3)),
                    np.random.default_rng(1).normal(5.0, 3.0, (4, 3))]).astype("float32")


@pytest.fixture(scope="module")
def mirrored_fit():
    graph = bn_graph([3], {"momentum": 0.0, "synchronized": True},
                     extra_nodes=[node("solo", "layer_BatchNormalization", momentum=0.0), node("z", "output")],
                     extra_edges=[edge("x", "output", "solo", "input"), edge("solo", "output", "z", "input")])
    return nncards.run({
        "graph": graph, "distribution": {"strategy": "mirrored", "devices": 2},
        "steps": [{"kind": "fit", "inputs": {"x": X.tolist()}, "targets": {"y": X.tolist(), "z": X.tolist()},
                   "batch_size": 8, "shuffle": False, "optimizer": {"name": "sgd", "learning_rate": 1e-9}}],
    })


@pytest.mark.parametrize("bn, batch", [("bn", X), ("solo", X[:4])], ids=["synchronized", "per-replica"])
def test_moving_statistics_come_from_the_global_batch_only_when_synchronized(mirrored_fit, bn, batch):
    assert mirrored_fit["status"] == "succeeded", mirrored_fit["error"]
    weights = mirrored_fit["layers"][bn]["weights"]
    np.testing.assert_allclose(weights["moving_mean"], batch.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights["moving_variance"], batch.var(0), rtol=1e-4)


def test_unsynchronized_statistics_differ_from_the_global_batch(mirrored_fit):
    weights = mirrored_fit["layers"]["solo"]["weights"]
    assert not np.allclose(weights["moving_mean"], X.mean(0), atol=0.5)
    assert not np.allclose(weights["moving_variance"], X.var(0), rtol=0.5)


def test_distribution_is_validated():
    result = nncards.run({"graph": bn_graph([3]), "distribution": {"strategy": "mirrored", "devices": 0}})
    assert result["status"] == "failed"
    assert result["error"]["code"] == "request_invalid"
    assert result["error"]["errors"][0]["port"] == "distribution/devices"
