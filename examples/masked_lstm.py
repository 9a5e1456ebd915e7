"""A masked LSTM with batch normalization on padded sequences of token ids.

Each sequence holds 3 to 12 tokens from 1 to 9, padded with 0 to a common length; the label says
whether its tokens average more than 5. An Embedding with `mask_zero` marks the padding, and the
mask reaches the LSTM, the batch normalization (whose batch statistics leave padded steps out)
and the average pooling, so padding changes nothing: the same sequence padded to any length
gets the same prediction.

    python examples/masked_lstm.py
"""

from __future__ import annotations

import numpy as np

from example_runner import main, train_and_test
from nncards.contract.arrays import encode

LENGTH = 12


def data(n: int, seed: int, length: int = LENGTH) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens = np.zeros((n, length), np.int32)
    labels = np.zeros((n, 1), np.float32)
    for row in range(n):
        real = rng.integers(1, 10, rng.integers(3, LENGTH + 1))
        tokens[row, :len(real)] = real
        labels[row] = real.mean() > 5
    return tokens, labels


def graph() -> dict:
    chain = [
        ("tokens", "input", {"shape": [None], "dtype": "int32"}),
        ("embed", "layer_Embedding", {"input_dim": 10, "output_dim": 8, "mask_zero": True}),
        ("lstm", "layer_LSTM", {"units": 16, "return_sequences": True}),
        ("bn", "layer_BatchNormalization", {"momentum": 0.9}),
        ("mean", "layer_GlobalAveragePooling1D", {}),
        ("score", "layer_Dense", {"units": 1, "activation": "sigmoid"}),
        ("high", "output", {}),
    ]
    nodes = [{"id": id, "card": card, "params": params} for id, card, params in chain]
    edges = [{"source": a[0], "source_port": "output", "target": b[0], "target_port": "input"}
             for a, b in zip(chain, chain[1:])]
    return {"schema_version": 1, "nodes": nodes, "edges": edges}


def run_request(n_train: int = 2000, n_test: int = 400, epochs: int = 10, seed: int = 0) -> dict:
    test = data(n_test, seed + 1)
    # the same test sequences with twice as much padding: predictions must not move
    predictions = [{"kind": "predict", "inputs": {"tokens": encode(tokens, True)}}
                   for tokens in (test[0], np.pad(test[0], ((0, 0), (0, LENGTH))))]
    return train_and_test(graph(), data(n_train, seed), test, epochs, "binary_crossentropy", "binary_accuracy",
                          seed, tuple(predictions))


def report(result: dict) -> str:
    short, long = (np.asarray(s["outputs"]["high"]) for s in result["steps"][2:])
    return (f"held-out accuracy {result['steps'][1]['metrics']['binary_accuracy']:.3f}, largest change "
            f"from extra padding {np.abs(short - long).max():.2e}")


if __name__ == "__main__":
    raise SystemExit(main(__doc__, run_request, report, epochs=10))
