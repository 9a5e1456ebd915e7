"""The command line the example networks share: run the example through nncards, or save its RUN."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable

import nncards


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
