"""A CNN fit through `nncards serve` against the same fit in process, arrays as nested lists and as base64.

    python benchmarks/runs.py [--samples 2048] [--epochs 1] [--repeats 3]

The run: Input (32, 32, 3) → Conv2D 16 → batch normalization → ReLU → global average pooling →
Dense 10 → Output, one fit step over `--samples` random images (float32; about 24 MiB of
numbers at the default). Every figure is wall time, the median of `--repeats`:
- in process: `nncards.run(request)` in one Python process that has run it once before (warm),
  and the first run of a fresh process, TensorFlow's import included (cold);
- server: `POST /api/v1/runs?wait=true` with the request's JSON bytes (built before the clock
  starts) to `nncards serve` in its own process, after one run (warm), and the first run of a
  fresh server, whose run worker starts with that run (cold);
each with the arrays as nested JSON lists and as `{dtype, shape, base64}` blocks. The in-process
figures come from a child process so that both sides start from the same state. Ratios last:
server / in process (aim <= 1.1 warm), lists / base64 (aim <= 1.3).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

SERVE = [sys.executable, "-m", "nncards.cli", "serve"]
FORMATS = ("lists", "base64")


def node(id, card, **params):
    return {"id": id, "card": card, "params": params}


def edge(source, target):
    return {"source": source, "source_port": "output", "target": target, "target_port": "input"}


def cnn_request(samples: int, epochs: int, array_format: str) -> dict:
    chain = [node("x", "input", shape=[32, 32, 3]), node("conv", "layer_Conv2D", filters=16, kernel_size=[3, 3]),
             node("bn", "layer_BatchNormalization"), node("relu", "layer_ReLU"),
             node("pool", "layer_GlobalAveragePooling2D"), node("dense", "layer_Dense", units=10), node("y", "output")]
    generator = np.random.default_rng(0)
    x = generator.random((samples, 32, 32, 3), dtype=np.float32)
    y = generator.random((samples, 10), dtype=np.float32)

    def array(values: np.ndarray):
        if array_format == "lists":
            return values.tolist()
        return {"dtype": "float32", "shape": list(values.shape), "base64": base64.b64encode(values.tobytes()).decode()}

    return {"graph": {"nodes": chain, "edges": [edge(a["id"], b["id"]) for a, b in zip(chain, chain[1:])]},
            "seed": 0,
            "steps": [{"kind": "fit", "inputs": {"x": array(x)}, "targets": {"y": array(y)}, "epochs": epochs,
                       "batch_size": 64}]}


def in_process(args) -> None:
    """In the child: time `nncards.run` cold once, then warm `--repeats` times; print JSON."""
    import nncards

    request = cnn_request(args.samples, args.epochs, args.in_process)
    started = time.perf_counter()  # the request is made before the clock: the server's client makes it too
    result = nncards.run(request)
    figures = {"cold": time.perf_counter() - started, "warm": []}
    assert result["status"] == "succeeded", result["error"]
    for _ in range(args.repeats):
        request = cnn_request(args.samples, args.epochs, args.in_process)
        started = time.perf_counter()
        nncards.run(request)
        figures["warm"].append(time.perf_counter() - started)
    print(json.dumps(figures))


def child_figures(args, array_format: str) -> dict:
    command = [sys.executable, __file__, "--in-process", array_format, "--samples", str(args.samples),
               "--epochs", str(args.epochs), "--repeats", str(args.repeats)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post_run(port: int, body: bytes) -> float:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/runs?wait=600", data=body,
                                     headers={"content-type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=900) as answer:
        result = json.loads(answer.read())
    elapsed = time.perf_counter() - started
    assert result.get("status") == "succeeded", result
    return elapsed


def server_figures(args, array_format: str) -> dict:
    body = json.dumps(cnn_request(args.samples, args.epochs, array_format)).encode()
    with tempfile.TemporaryDirectory() as data_dir:
        port = free_port()
        # The default body limit (64 MiB) is below the lists' request at the default size (some 126 MiB).
        process = subprocess.Popen([*SERVE, "--port", str(port), "--data-dir", data_dir, "--workers", "1",
                                    "--run-niceness", "0", "--max-wait-seconds", "600",
                                    "--max-body-bytes", str(max(len(body), 2**26))],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        try:
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=5).read()
                    break
                except OSError:
                    if process.poll() is not None:
                        sys.exit(f"nncards serve exited with {process.returncode}")
                    time.sleep(0.05)
            cold = post_run(port, body)
            warm = [post_run(port, body) for _ in range(args.repeats)]
        finally:
            process.terminate()
            process.wait(30)
    return {"cold": cold, "warm": warm, "bytes": len(body)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="warm runs timed")
    parser.add_argument("--in-process", choices=FORMATS, help=argparse.SUPPRESS)  # the child's own part
    args = parser.parse_args()
    if args.in_process:
        return in_process(args)

    figures = {}
    for array_format in FORMATS:
        figures["in process", array_format] = child_figures(args, array_format)
        figures["server", array_format] = server_figures(args, array_format)
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; samples {args.samples}, "
          f"epochs {args.epochs}")
    for (where, array_format), measured in figures.items():
        size = f", request {measured['bytes'] / 2**20:.1f} MiB" if "bytes" in measured else ""
        print(f"{where:10} {array_format:6}: cold {measured['cold']:.2f} s, warm median "
              f"{statistics.median(measured['warm']):.2f} s ({', '.join(f'{w:.2f}' for w in measured['warm'])}){size}")
    warm = {key: statistics.median(measured["warm"]) for key, measured in figures.items()}
    ratios = [f"server/in process warm {f} {warm['server', f] / warm['in process', f]:.2f}" for f in FORMATS]
    ratios += [f"server/in process cold {f} {figures['server', f]['cold'] / figures['in process', f]['cold']:.2f}"
               for f in FORMATS]
    ratios += [f"lists/base64 warm {w} {warm[w, 'lists'] / warm[w, 'base64']:.2f}" for w in ("in process", "server")]
    print("ratios (aims: server/in process warm <= 1.1, lists/base64 <= 1.3): " + "; ".join(ratios))


if __name__ == "__main__":
    main()
