"""A small convolutional network with batch normalization that tells coloured shapes apart.

It draws its own data (squares, discs and triangles of random colour, size and place on a noisy
background), builds the network as an nncards graph, trains and evaluates it through
`nncards.run`, and prints the held-out accuracy. `--write FILE` saves the RUN request instead.

    python examples/shapes_cnn.py            # ≥ 90% accuracy in well under a minute on 2 cores
"""

from __future__ import annotations

import numpy as np

from example_runner import main, train_and_test

SIZE = 16
CLASSES = ("square", "disc", "triangle")


def draw(rng: np.random.Generator, kind: int) -> np.ndarray:
    image = rng.uniform(0.0, 0.25, (SIZE, SIZE, 3))
    radius = rng.integers(3, 7)
    cy, cx = rng.integers(radius, SIZE - radius, size=2)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    dy, dx = rows - cy, cols - cx
    if CLASSES[kind] == "square":
        inside = (abs(dy) <= radius - 1) & (abs(dx) <= radius - 1)
    elif CLASSES[kind] == "disc":
        inside = dy ** 2 + dx ** 2 <= radius ** 2
    else:  # apex up: the width grows from the top row to the bottom one
        inside = (dy >= -radius) & (dy <= radius) & (abs(dx) <= (dy + radius) / 2)
    image[inside] = rng.uniform(0.5, 1.0, 3)
    return image.astype(np.float32)


def data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    return np.stack([draw(rng, k) for k in labels]), labels.astype(np.int32)


def block(index: int, filters: int, source: str) -> tuple[list, list]:
    """Convolution → batch normalization → ReLU, reading from `source`."""
    conv, bn, act = f"conv{index}", f"bn{index}", f"relu{index}"
    nodes = [
        {"id": conv, "card": "layer_Conv2D", "params": {"filters": filters, "kernel_size": [3, 3], "padding": "same", "use_bias": False}},
        {"id": bn, "card": "layer_BatchNormalization", "params": {"momentum": 0.9}},
        {"id": act, "card": "layer_ReLU", "params": {}},
    ]
    edges = [_edge(source, conv), _edge(conv, bn), _edge(bn, act)]
    return nodes, edges


def _edge(source: str, target: str) -> dict:
    return {"source": source, "source_port": "output", "target": target, "target_port": "input"}


def graph() -> dict:
    nodes = [{"id": "image", "card": "input", "params": {"shape": [SIZE, SIZE, 3]}}]
    edges = []
    source = "image"
    for index, filters in enumerate((8, 16, 32), start=1):
        block_nodes, block_edges = block(index, filters, source)
        nodes += block_nodes
        edges += block_edges
        source = f"relu{index}"
        if index < 3:
            nodes.append({"id": f"pool{index}", "card": "layer_MaxPooling2D", "params": {}})
            edges.append(_edge(source, f"pool{index}"))
            source = f"pool{index}"
    nodes += [
        {"id": "gap", "card": "layer_GlobalAveragePooling2D", "params": {}},
        {"id": "classes", "card": "layer_Dense", "params": {"units": len(CLASSES), "activation": "softmax"}},
        {"id": "shape", "card": "output", "params": {}},
    ]
    edges += [_edge(source, "gap"), _edge("gap", "classes"), _edge("classes", "shape")]
    return {"schema_version": 1, "nodes": nodes, "edges": edges}


def run_request(n_train: int = 1500, n_test: int = 300, epochs: int = 8, seed: int = 0) -> dict:
    return train_and_test(graph(), data(n_train, seed), data(n_test, seed + 1), epochs,
                          "sparse_categorical_crossentropy", "accuracy", seed)


def report(result: dict) -> str:
    return f"held-out accuracy {result['steps'][1]['metrics']['accuracy']:.3f}"


if __name__ == "__main__":
    raise SystemExit(main(__doc__, run_request, report, epochs=8))
