"""Catalogue speed of `nncards serve` against a bare Starlette app in its own process.

    python benchmarks/catalog.py [--slices 20] [--slice-seconds 0.5] [--connections 2] [--starts 3]

1. Throughput: `nncards serve` and a bare Starlette app, each in its own process under uvicorn
   with the same settings (access log on in both), answer the same paths with the same bytes
   and headers (security headers included): the bare app holds, for each path, the identity
   and gzip answers it read from the nncards server, and picks between them with the least work a server can do (gzip when
   the Accept-Encoding header names it). For every route (`/cards`, one card, `/types`), with
   and without `Accept-Encoding: gzip`, the two servers take turns in short slices (`--slices`
   each, of `--slice-seconds`, over `--connections` keep-alive connections), so that both meet
   the same conditions, whatever else the machine is doing. The figure is requests/s of nncards
   divided by requests/s of the bare app (1.0: nncards adds nothing to sending the bytes).
2. Start-up: wall time from launching `nncards serve` to the first 200 of `GET /api/v1/cards`,
   the median of `--starts` cold starts.

The load generator is a minimal HTTP/1.1 keep-alive client on asyncio streams: general-purpose
Python HTTP clients spend more time per request than the server does, and would measure
themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

SERVE = [sys.executable, "-m", "nncards.cli", "serve"]
CARDS = "/api/v1/cards"
ROUTES = (CARDS, CARDS + "/layer_BatchNormalization", "/api/v1/types")
ENCODINGS = ("identity", "gzip")
# Written by uvicorn and Starlette in both; `connection: close` only echoes the recording client (urllib).
SERVERS_OWN_HEADERS = ("date", "server", "content-length", "connection")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(command: list[str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([*command, "--port", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)
    return process, port


def first_answer(port: int, process: subprocess.Popen, started: float) -> float:
    while True:
        if process.poll() is not None:
            sys.exit(f"{' '.join(process.args[1:3])} exited with {process.returncode}")
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


def record_answers(port: int, folder: Path) -> dict:
    """Every route's answer in both encodings, bodies as files in `folder`: what the bare app serves."""
    answers = {}
    for index, path in enumerate(ROUTES):
        for encoding in ENCODINGS:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Accept-Encoding": encoding})
            with urllib.request.urlopen(request) as answer:
                body = answer.read()
                headers = {name: value for name, value in answer.headers.items()
                           if name.lower() not in SERVERS_OWN_HEADERS}
            if encoding != "identity" and answer.headers["content-encoding"] != encoding:
                sys.exit(f"{path} did not answer {encoding} when asked")
            (folder / f"{index}.{encoding}").write_bytes(body)
            answers.setdefault(path, {})[encoding] = {"file": f"{index}.{encoding}", "headers": headers,
                                                      "size": len(body)}
    (folder / "answers.json").write_text(json.dumps(answers))
    return answers


def serve_bare(folder: Path, port: int) -> None:
    """The baseline: a bare Starlette app answering the recorded bytes, under uvicorn as nncards runs it."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    def endpoint(path: str, answers: dict):
        responses = {encoding: (folder.joinpath(a["file"]).read_bytes(), a["headers"]) for encoding, a in answers.items()}

        async def answer(request) -> Response:
            body, headers = responses["gzip" if "gzip" in request.headers.get("accept-encoding", "") else "identity"]
            return Response(body, headers=headers)

        return Route(path, answer)

    recorded = json.loads((folder / "answers.json").read_text())
    app = Starlette(routes=[endpoint(path, answers) for path, answers in recorded.items()])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")


async def _connection(port: int, path: str, encoding: str, stop_at: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: {encoding}\r\n\r\n".encode()
    done = 0
    while time.perf_counter() < stop_at:
        writer.write(request)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):  # the server closed it (idle timeout): a new one
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            continue
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{path}: {head.splitlines()[0].decode()}")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
        done += 1
    writer.close()
    return done


async def load(port: int, path: str, encoding: str, seconds: float, connections: int) -> tuple[int, float]:
    """Requests answered and the time taken."""
    started = time.perf_counter()
    counts = await asyncio.gather(*(_connection(port, path, encoding, started + seconds) for _ in range(connections)))
    return sum(counts), time.perf_counter() - started


def throughput(ports: dict[str, int], path: str, encoding: str, args) -> dict[str, float]:
    """Requests/s of each server on one route, the servers taking turns."""
    answered = dict.fromkeys(ports, 0)
    elapsed = dict.fromkeys(ports, 0.0)
    for _ in range(args.slices):
        for name, port in ports.items():
            count, seconds = asyncio.run(load(port, path, encoding, args.slice_seconds, args.connections))
            answered[name] += count
            elapsed[name] += seconds
    return {name: answered[name] / elapsed[name] for name in ports}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=20, help="turns of each server per route and encoding")
    parser.add_argument("--slice-seconds", type=float, default=0.5, help="length of one turn")
    parser.add_argument("--connections", type=int, default=2, help="keep-alive connections per turn")
    parser.add_argument("--starts", type=int, default=3, help="cold starts timed")
    parser.add_argument("--serve-bare", metavar="FOLDER", help=argparse.SUPPRESS)  # the baseline's own process
    parser.add_argument("--port", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        return serve_bare(Path(args.serve_bare), int(args.port))

    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as answers_dir:
        nncards_serve = [*SERVE, "--data-dir", data_dir]
        starts = []
        for _ in range(args.starts):
            started = time.perf_counter()
            process, port = launch(nncards_serve)
            starts.append(first_answer(port, process, started))
            stop(process)

        processes = {}
        try:
            processes["nncards"] = launch(nncards_serve)
            first_answer(processes["nncards"][1], processes["nncards"][0], time.perf_counter())
            answers = record_answers(processes["nncards"][1], Path(answers_dir))
            processes["bare"] = launch([sys.executable, __file__, "--serve-bare", answers_dir])
            first_answer(processes["bare"][1], processes["bare"][0], time.perf_counter())
            load_average = os.getloadavg()[0]
            ports = {name: port for name, (_, port) in processes.items()}
            figures = {(path, encoding): throughput(ports, path, encoding, args)
                       for path in ROUTES for encoding in ENCODINGS}
        finally:
            for process, _ in processes.values():
                stop(process)

    print(f"load average while measuring: {load_average:.1f} on {os.cpu_count()} cores")
    for path, answered in answers.items():
        print(f"GET {path}: " + ", ".join(f"{encoding} {a['size']} bytes" for encoding, a in answered.items()))
    for (path, encoding), rates in figures.items():
        print(f"GET {path} ({encoding}): nncards {rates['nncards']:.0f} requests/s, bare Starlette "
              f"{rates['bare']:.0f} requests/s")
    print(f"start to first catalogue answer: median {statistics.median(starts):.3f} s "
          f"(runs: {', '.join(f'{s:.3f}' for s in starts)}; aim < 1.5 s)")
    ratios = {key: rates["nncards"] / rates["bare"] for key, rates in figures.items()}
    print("ratios nncards/bare (aim >= 0.9): " + ", ".join(
        f"{path.removeprefix('/api/v1')} {encoding} {ratio:.3f}" for (path, encoding), ratio in ratios.items())
        + f"; lowest {min(ratios.values()):.3f}")


if __name__ == "__main__":
    main()
