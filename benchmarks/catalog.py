"""Catalogue speed of `nncards serve`: throughput against static bytes, and time to first answer.

    python benchmarks/catalog.py [--slices 20] [--slice-seconds 0.5] [--connections 2] [--starts 3]

1. Throughput: one server started with `--benchmark`, which adds `/api/v1/benchmark/static`,
   an endpoint answering bytes as long as the catalogue with no work at all. The two endpoints
   take turns in short slices (`--slices` each, of `--slice-seconds`, over `--connections`
   keep-alive connections), so that both meet the same conditions, whatever else the machine
   is doing; the figure is requests/s of `GET /api/v1/cards` divided by requests/s of the
   static endpoint (1.0: the catalogue costs nothing beyond sending its bytes). (Loading both
   at once would not do: the server answers its connections in turn, so every connection gets
   as many answers, whatever each costs.) The server is settled first: its TensorFlow warm-up
   and its worker's start are over.
2. Start-up: wall time from launching `nncards serve` to the first 200 of `GET /api/v1/cards`,
   the median of `--starts` cold starts.

The load generator is a minimal HTTP/1.1 keep-alive client on asyncio streams: general-purpose
Python HTTP clients spend more time per request than the server does, and would measure
themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

SERVE = [sys.executable, "-m", "nncards.cli", "serve"]
CARDS = "/api/v1/cards"
STATIC = "/api/v1/benchmark/static"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(data_dir: str, *flags: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([*SERVE, "--port", str(port), "--data-dir", data_dir, *flags],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return process, port


def first_catalogue(port: int, process: subprocess.Popen, started: float) -> float:
    while True:
        if process.poll() is not None:
            sys.exit(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{CARDS}", timeout=5) as answer:
                if answer.status == 200:
                    answer.read()
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.005)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


def post_json(port: int, path: str, body: bytes) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        answer.read()


def settle(port: int) -> None:
    """Wait for the background work that follows start-up: TensorFlow in the server and in the worker."""
    graph = (b'{"nodes": [{"id": "x", "card": "input", "params": {"shape": [1]}}, {"id": "y", "card": "output"}],'
             b' "edges": [{"source": "x", "source_port": "output", "target": "y", "target_port": "input"}]}')
    post_json(port, "/api/v1/graphs/validate", graph)
    post_json(port, "/api/v1/runs?wait=true",
              b'{"graph": ' + graph + b', "steps": [{"kind": "call", "inputs": {"x": [[1.0]]}}]}')


async def _connection(port: int, path: str, stop_at: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    done = 0
    while time.perf_counter() < stop_at:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{path}: {head.splitlines()[0].decode()}")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
        done += 1
    writer.close()
    return done


async def load(port: int, path: str, seconds: float, connections: int) -> tuple[int, float]:
    """Requests answered and the time taken."""
    started = time.perf_counter()
    counts = await asyncio.gather(*(_connection(port, path, started + seconds) for _ in range(connections)))
    return sum(counts), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=20, help="turns of each endpoint")
    parser.add_argument("--slice-seconds", type=float, default=0.5, help="length of one turn")
    parser.add_argument("--connections", type=int, default=2, help="keep-alive connections per endpoint")
    parser.add_argument("--starts", type=int, default=3, help="cold starts timed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        starts = []
        for _ in range(args.starts):
            started = time.perf_counter()
            process, port = launch(data_dir)
            starts.append(first_catalogue(port, process, started))
            stop(process)

        process, port = launch(data_dir, "--benchmark")
        try:
            first_catalogue(port, process, time.perf_counter())
            settle(port)
            load_average = os.getloadavg()[0]
            size = len(urllib.request.urlopen(f"http://127.0.0.1:{port}{CARDS}").read())
            answered = {CARDS: 0, STATIC: 0}
            elapsed = {CARDS: 0.0, STATIC: 0.0}
            for turn in range(2 * args.slices):
                path = (CARDS, STATIC)[turn % 2]
                count, seconds = asyncio.run(load(port, path, args.slice_seconds, args.connections))
                answered[path] += count
                elapsed[path] += seconds
        finally:
            stop(process)

    cards, static = answered[CARDS] / elapsed[CARDS], answered[STATIC] / elapsed[STATIC]
    print(f"catalogue size: {size} bytes; load average while measuring: {load_average:.1f} on {os.cpu_count()} cores")
    print(f"GET {CARDS}: {cards:.0f} requests/s")
    print(f"GET {STATIC}: {static:.0f} requests/s")
    print(f"ratio catalogue/static: {cards / static:.3f} (aim >= 0.9)")
    print(f"start to first catalogue answer: median {statistics.median(starts):.3f} s "
          f"(runs: {', '.join(f'{s:.3f}' for s in starts)}; aim < 1.5 s)")


if __name__ == "__main__":
    main()
