"""The `nncards` command line (CONTRACT §8)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from nncards.keras_objects import VERBOSE_VARIABLE


def _load(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        sys.exit(f"nncards: cannot read {path}: {exc}")


def _print(document: dict) -> None:
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")


def as_run(document: dict) -> dict:
    """A RUN document as is; a bare graph becomes a RUN predicting on one batch of zeros."""
    if "graph" in document:
        return document
    inputs = {}
    for node in document.get("nodes", []):
        if node.get("card") == "input":
            params = node.get("params", {})
            shape = [1] + [d or 1 for d in params.get("shape", [])]
            dtype = params.get("dtype", "float32")
            zero = False if dtype == "bool" else (0 if dtype.startswith("int") else 0.0)
            inputs[node["id"]] = _zeros(shape, zero)
    return {"graph": document, "steps": [{"kind": "predict", "inputs": inputs}]}


def _zeros(shape: list[int], zero):
    return [_zeros(shape[1:], zero) for _ in range(shape[0])] if shape else zero


def cmd_run(args) -> int:
    from nncards import run

    result = run(as_run(_load(args.file)))
    _print(result)
    return 0 if result["status"] == "succeeded" else 1


def cmd_validate(args) -> int:
    from pydantic import ValidationError

    from nncards.build.validation import validate

    document = _load(args.file)
    if not isinstance(document, dict) or not ({"nodes", "graph"} & set(document)):
        what = f"an object with keys {', '.join(sorted(document))}" if isinstance(document, dict) \
            else f"a JSON {type(document).__name__}"
        sys.exit(f"nncards: {args.file} is neither a graph (an object with `nodes`) nor a RUN "
                 f"(an object with `graph`): it holds {what}")
    try:
        result = validate(document.get("graph", document))
    except ValidationError as exc:
        _print({"valid": False, "errors": [{"code": "request_invalid", "port": "/".join(map(str, e["loc"])),
                                            "message": e["msg"]} for e in exc.errors()], "shapes": {}})
        return 1
    _print(result)
    return 0 if result["valid"] else 1


def cmd_cards(args) -> int:
    from nncards.registry import registry

    reg = registry()
    tree: dict = {}
    for card in reg.cards.values():
        branch = tree
        for part in card.path:
            branch = branch.setdefault(part, {})
        branch.setdefault(None, []).append(card)
    _print_tree(tree, 0)
    for error in reg.load_errors:
        print(f"! pack {error.pack} failed to load: {error.message}")
    return 0


def _print_tree(tree: dict, depth: int) -> None:
    for card in tree.get(None, []):
        print(f"{'  ' * depth}- {card.title} [{card.id}]")
    for name, branch in tree.items():
        if name is not None:
            print(f"{'  ' * depth}{name}/")
            _print_tree(branch, depth + 1)


def cmd_serve(args) -> int:
    from nncards.server.app import serve
    from nncards.server.settings import from_arguments

    serve(from_arguments(args))
    return 0


def cmd_tensorboard(args) -> int:
    from nncards.execute.options import default_data_dir, run_folder

    logs = run_folder(Path(args.data_dir) if args.data_dir else default_data_dir(), args.run_id) / "tensorboard"
    if not logs.is_dir():
        sys.exit(f"nncards: run {args.run_id} has no TensorBoard logs in {logs} "
                 "(a fit step writes them with \"tensorboard\": true)")
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logs), "--host", args.host,
               "--port", str(args.port)]
    os.execv(sys.executable, command)  # TensorBoard takes this process's place: a signal reaches it


def cmd_docs(args) -> int:
    from nncards.docs import main as docs_main

    return docs_main(Path.cwd(), check=args.check)


def _refusal(error) -> int:
    """An import or export that nncards refuses: its error envelope on stdout, exit 1."""
    _print({"error": error.body()})
    return 1


def cmd_import(args) -> int:
    import asyncio

    from nncards.contract.errors import NncardsError
    from nncards.server.services.interchange import InterchangeService

    if args.weights_from is not None and args.weights is None:
        sys.exit("nncards: --weights-from needs --weights RUN.json (where the RUN with those weights goes)")
    try:
        data = Path(args.file).read_bytes()
        weights_file = Path(args.weights_from).read_bytes() if args.weights_from is not None else None
    except OSError as exc:
        sys.exit(f"nncards: cannot read {exc.filename}: {exc.strerror}")
    # Read in a worker process, as the server reads it: a corrupt or crafted HDF5 file can crash the
    # HDF5 library (SIGSEGV), which is then the file's refusal, not the command's death.
    service = InterchangeService()
    try:
        result = asyncio.run(service.import_model(data, with_weights=args.weights is not None,
                                                  weights_file=weights_file))
    except NncardsError as error:
        return _refusal(error)
    finally:
        service.close()
    if args.weights is not None:
        Path(args.weights).write_text(json.dumps(result))
        result = result["graph"]
    _print(result)
    return 0


def cmd_export(args) -> int:
    from nncards.contract.errors import NncardsError
    from nncards.interchange.export import to_keras, to_python

    document = _load(args.file)
    try:
        if args.to == "python":
            sys.stdout.write(to_python(document.get("graph", document)))
        else:
            if not args.output:
                sys.exit("nncards: --to keras needs -o FILE.keras")
            to_keras(document, args.output)
    except NncardsError as error:
        return _refusal(error)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nncards", description="Neural-network cards for visual node editors.")
    parser.add_argument("--verbose", action="store_true",
                        help=f"let TensorFlow's start-up log lines through (also: {VERBOSE_VARIABLE}=1)")
    commands = parser.add_subparsers(dest="command", required=True)

    run_parser = commands.add_parser("run", help="run a RUN file (or a bare graph on one batch of zeros)")
    run_parser.add_argument("file")
    run_parser.set_defaults(handler=cmd_run)

    validate_parser = commands.add_parser("validate", help="validate a graph file (or the graph of a RUN file)")
    validate_parser.add_argument("file")
    validate_parser.set_defaults(handler=cmd_validate)

    cards_parser = commands.add_parser("cards", help="list the card catalogue as a tree")
    cards_parser.set_defaults(handler=cmd_cards)

    board_parser = commands.add_parser("tensorboard", help="start TensorBoard on the logs of a run")
    board_parser.add_argument("run_id")
    board_parser.add_argument("--data-dir", help="the data directory of the runs (default: as `nncards serve`)")
    board_parser.add_argument("--host", default="127.0.0.1")
    board_parser.add_argument("--port", type=int, default=6006)
    board_parser.set_defaults(handler=cmd_tensorboard)

    docs_parser = commands.add_parser("docs", help="regenerate the card and type pages and card images here")
    docs_parser.add_argument("--check", action="store_true",
                             help="write nothing; exit 1 when a generated file is missing or out of date")
    docs_parser.set_defaults(handler=cmd_docs)

    import_parser = commands.add_parser(
        "import", help="import a .keras file, a Keras 2 .h5 file or a Keras JSON config as a graph (printed as JSON)",
        description="Print the graph of a Keras model: every layer as its card, wires as the model's "
        "connections. The file is read as data: nothing in it is run. A model with layers no card "
        "expresses is refused with each such layer listed.")
    import_parser.add_argument("file")
    import_parser.add_argument("--weights", metavar="RUN.json",
                               help="also write a RUN holding the graph and the model's weights to this file")
    import_parser.add_argument("--weights-from", metavar="WEIGHTS.h5",
                               help="the weights of a JSON config: the HDF5 file Keras 2's `save_weights` wrote")
    import_parser.set_defaults(handler=cmd_import)

    export_parser = commands.add_parser(
        "export", help="export a graph (or a RUN with weights) as a Keras script or a .keras file")
    export_parser.add_argument("file", help="a GRAPH or RUN JSON file")
    export_parser.add_argument("--to", choices=["python", "keras"], required=True,
                               help="python: print a Keras functional-API script; keras: write a .keras file")
    export_parser.add_argument("-o", "--output", metavar="FILE.keras", help="where --to keras writes")
    export_parser.set_defaults(handler=cmd_export)

    from nncards.server.settings import add_arguments

    serve_parser = commands.add_parser(
        "serve", help="serve the REST API and the editor",
        description="Serve the card catalogue, validation and runs over REST (under /api/v1) and the editor "
        "at /. Every option can also be set by its environment variable.")
    add_arguments(serve_parser)
    serve_parser.set_defaults(handler=cmd_serve)

    args = parser.parse_args(argv)
    if args.verbose:
        os.environ[VERBOSE_VARIABLE] = "1"
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
