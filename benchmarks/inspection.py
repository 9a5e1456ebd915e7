"""An `inspect` of every node against a `predict` of the same batch, on a large imported network.

A `keras.applications` architecture (default DenseNet121, a few hundred nodes) is imported as a
graph and built once by nncards; then, interleaved and warm, a `predict` step and an `inspect`
step (every tensor-producing node) run on the same batch. The aim: inspect within 2× predict.

    python benchmarks/inspection.py [--model DenseNet121] [--size 64] [--batch 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="DenseNet121")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from nncards.keras_objects import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    from nncards.contract.run import InspectStep, PredictStep, Run
    from nncards.execute.options import RunOptions
    from nncards.execute.runner import RunModel
    from nncards.interchange.keras_import import import_config

    original = getattr(keras.applications, args.model)(weights=None, input_shape=(args.size, args.size, 3),
                                                        classes=10)
    started = time.perf_counter()
    graph = import_config({"class_name": original.__class__.__name__, "config": original.get_config()}).graph
    imported = time.perf_counter() - started
    print(f"imported {len(graph['nodes'])} nodes in {imported:.1f} s", flush=True)
    session = RunModel(Run.model_validate({"graph": graph}), RunOptions())
    built = time.perf_counter() - started - imported
    print(f"built in {built:.1f} s", flush=True)
    input_id = next(iter(session.built.input_specs))
    batch = np.random.default_rng(0).normal(size=(args.batch, args.size, args.size, 3)).astype("float32")
    inputs = {input_id: {"dtype": "float32", "shape": list(batch.shape),
                         "base64": base64.b64encode(batch.tobytes()).decode()}}
    predict = PredictStep.model_validate({"kind": "predict", "inputs": inputs, "batch_size": args.batch})
    inspect = InspectStep.model_validate({"kind": "inspect", "inputs": inputs})
    timings: dict[str, list[float]] = {"predict": [], "inspect": []}
    for repeat in range(args.repeats + 1):  # the first round traces both functions: not counted
        for name, step, handler in (("predict", predict, session.predict), ("inspect", inspect, session.inspect)):
            started = time.perf_counter()
            result = handler(0, step)
            if repeat:
                timings[name].append(time.perf_counter() - started)
    nodes = len(graph["nodes"])
    inspected = len(result.nodes)
    print(f"{args.model} at {args.size}x{args.size}: {nodes} nodes, import {imported:.2f} s, build {built:.2f} s")
    for name, values in timings.items():
        print(f"{name:8s} median {statistics.median(values) * 1000:8.1f} ms over {len(values)} runs")
    ratio = statistics.median(timings["inspect"]) / statistics.median(timings["predict"])
    print(f"inspect of {inspected} nodes / predict, batch {args.batch}: {ratio:.2f}x (aim <= 2)")


if __name__ == "__main__":
    main()
