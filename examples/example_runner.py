"""The command line the example networks share: run the example through nncards, or save its RUN."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable

import numpy as np

import nncards
from nncards.contract.arrays import encode


def train_and_test(graph: dict, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                   epochs: int, loss: str, metric: str, seed: int, extra_steps: tuple = ()) -> dict:
    """A RUN that fits the graph's one input/output pair on `train`, then evaluates it on `test`."""
    x_id = next(n["id"] for n in graph["nodes"] if n["card"] == "input")
    y_id = next(n["id"] for n in graph["nodes"] if n["card"] == "output")
    (x, y), (x_test, y_test) = train, test
    return {
        "graph": graph, "seed": seed,
        "steps": [
            {"kind": "fit", "inputs": {x_id: encode(x, True)}, "targets": {y_id: encode(y, True)},
             "epochs": epochs, "batch_size": 32, "optimizer": {"name": "adam", "learning_rate": 0.01},
             "loss": loss, "metrics": [metric]},
            {"kind": "evaluate", "inputs": {x_id: encode(x_test, True)}, "targets": {y_id: encode(y_test, True)}},
            *extra_steps,
        ],
    }


def main(doc: str, run_request: Callable[..., dict], report: Callable[[dict], str], epochs: int,
         argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--write", metavar="FILE", help="save the RUN request as JSON instead of running it")
    parser.add_argument("--epochs", type=int, default=epochs)
    args = parser.parse_args(argv)
    request = run_request(epochs=args.epochs)
    if args.write:
        with open(args.write, "w") as file:
            json.dump(request, file)
        return 0
    start = time.perf_counter()
    result = nncards.run(request)
    if result["status"] != "succeeded":
        print(json.dumps(result["error"], indent=2), file=sys.stderr)
        return 1
    print(f"{report(result)}, after {time.perf_counter() - start:.1f} s")
    return 0
